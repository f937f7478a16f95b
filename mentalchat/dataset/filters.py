"""Quality filters shared by both paths; each returns a reason string or None (keep).

Rejected items are kept in the ``rejects`` table with the filter's name and reason, so a user
can see what a threshold costs.
"""

from __future__ import annotations

import re

__all__ = ["REFUSAL_PATTERNS", "refusal_or_disclaimer", "too_short", "truncated", "word_count"]

_WORD = re.compile(r"[\w'’-]+")


def word_count(text: str | None) -> int:
    """Words as a reader counts them (placeholders like ``[NAME_1]`` count as one)."""
    return len(_WORD.findall(text or ""))


def too_short(text: str | None, min_words: int, what: str = "text") -> str | None:
    n = word_count(text)
    return f"{what} has {n} words (< {min_words})" if n < min_words else None


def truncated(finish_reason: str | None) -> str | None:
    """Generation stopped at the token limit: the answer is cut off mid-thought."""
    return "cut off at the max_tokens limit (finish_reason=length)" if finish_reason == "length" else None


# Refusals and AI disclaimers: a counselling answer that says it cannot help, or that it is a
# language model, teaches the fine-tuned model to say so too.
REFUSAL_PATTERNS = [re.compile(p, re.I) for p in (
    r"\bas an? (?:ai|artificial intelligence|language model|llm|virtual assistant|chatbot)\b",
    r"\bi(?:'m| am) (?:just |only )?(?:an? )?(?:ai|language model|chatbot|bot|virtual assistant)\b",
    r"\bi(?:'m| am) not (?:a |an )?(?:licensed|qualified|certified|real|human|trained) "
    r"(?:therapist|counsel+or|professional|psychologist|doctor|mental health professional|person)\b",
    r"\bi (?:can(?:no|')t|am (?:not )?(?:able|unable) to|won't) (?:provide|offer|give) "
    r"(?:you )?(?:medical|professional|mental health|therapeutic|clinical) (?:advice|help|diagnos\w+|treatment)\b",
    r"\bi(?:'m| am) (?:sorry|afraid),? (?:but )?i (?:can(?:no|')t|am unable to|won't) (?:help|assist|answer|respond|do that)\b",
    r"\bi (?:can(?:no|')t|won't) (?:help|assist) (?:you )?with (?:that|this)\b",
    r"\bthis is not (?:a substitute for|medical advice|professional advice)\b",
    r"\bnot (?:a )?substitute for professional\b",
    r"\bi do not have (?:personal )?(?:feelings|emotions|experiences)\b",
)]


def refusal_or_disclaimer(text: str | None) -> str | None:
    for rx in REFUSAL_PATTERNS:
        m = rx.search(text or "")
        if m:
            return f"refusal or AI disclaimer: {m.group(0)!r}"
    return None
