"""Filters and near-duplicate detection."""

from __future__ import annotations

from mentalchat.dataset.dedup import near_duplicates
from mentalchat.dataset.filters import refusal_or_disclaimer, too_short, truncated, word_count


def test_word_count_and_too_short() -> None:
    assert word_count("I can't sleep, [NAME_1] says.") == 5
    assert too_short("a b c", 4, "answer") == "answer has 3 words (< 4)"
    assert too_short("a b c d", 4) is None


def test_truncated() -> None:
    assert truncated("length") and truncated("stop") is None


def test_refusals_and_disclaimers() -> None:
    for text in ("As an AI language model, I cannot feel, but here are tips.",
                 "I'm sorry, but I can't help with that.",
                 "I am not a licensed therapist, so please see one.",
                 "This is not a substitute for professional advice."):
        assert refusal_or_disclaimer(text), text
    assert refusal_or_disclaimer("It makes sense that you feel this way; a counsellor can help too.") is None


def test_near_duplicates_keep_the_first() -> None:
    base = "Lately I feel anxious every single morning before work and I cannot stop worrying about my manager"
    texts = [base, base + " at all.", "My teenage son refuses to talk to me and spends all night gaming in his room.",
             base.replace("Lately", "Recently")]
    dups = near_duplicates(texts, threshold=0.7)
    assert dups == {1: 0, 3: 0}
