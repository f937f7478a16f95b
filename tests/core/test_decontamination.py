"""Decontamination on planted overlaps, and against the authors' pool and synthetic pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.config import ConfigError
from mentalchat.core.decontamination import (
    DecontaminationConfig,
    Decontaminator,
    Reference,
    load_reference,
    normalize_words,
    reference_path,
    scan_pairs,
    shingles,
)
from mentalchat.core.questions import bundled_questions
from mentalchat.errors import InputError

# Benchmark-like questions written for this test.
QUESTIONS = {
    "q1": (
        "Ever since my brother moved abroad last spring I have felt a hollow ache every evening. "
        "We used to cook dinner together on Sundays and now the kitchen feels far too quiet. "
        "I call him but the time difference means he is usually asleep when I finally get home. "
        "My friends say I should be happy for him and I am, yet I cannot shake the feeling that "
        "I have lost my best friend. How do I stop feeling so alone in my own flat?"
    ),
    "q2": (
        "At work I have started to dread the Monday planning meeting so much that I feel sick on "
        "Sunday nights. My team lead asks for estimates in front of everyone and my mind goes "
        "completely blank. Afterwards I replay every word I said and convince myself that they all "
        "think I am incompetent. I have been in this job for three years and I used to enjoy it. "
        "What can I do to calm down before these meetings?"
    ),
    "q3": "Why do I keep waking up at four in the morning with my heart pounding?",
}

REFERENCE = Reference(path="<test>", ids=list(QUESTIONS), texts=list(QUESTIONS.values()))

EDITED = QUESTIONS["q1"].replace("evening", "night").replace("far too", "much too").replace("I call", "I phone")
REWRITTEN = (  # q1 with seven words changed (his sister now)
    "Ever since my sister moved abroad last spring I have felt a hollow ache every night. "
    "We used to cook dinner together on Sundays and now the kitchen feels much too quiet. "
    "I ring her but the time difference means she is usually asleep when I finally get home. "
    "My friends say I should be happy for her and I am, yet I cannot shake the feeling that "
    "I have lost my best friend. How do I stop feeling so alone in my own flat?"
)
REORDERED = " ".join(reversed([s.strip() + "." for s in QUESTIONS["q2"].split(".") if s.strip()]))
QUOTED = ("Hi, I hope you can help me, I have never written to anyone about this before. "
          + QUESTIONS["q1"] + " Thanks for reading, it means a lot to me.")
UNRELATED = [  # counselling text on the same themes, not drawn from the questions
    ("I don't know how to tell my parents that I want to leave university. I feel so alone with this "
    "decision and every evening I lie awake wondering whether I am making a terrible mistake."),
    ("My partner works nights and we barely see each other. I feel lonely at home and I don't know how "
    "to bring it up without sounding needy. What should I do?"),
    ("Meetings make me anxious. I have been at my job for a year and my manager is kind, but my mind "
    "goes blank whenever someone asks me a direct question. How can I feel calmer?"),
    "I keep waking up early and cannot get back to sleep, and then I am exhausted all day at work.",
]


@pytest.fixture(params=["ngram", "minhash"])
def decon(request: pytest.FixtureRequest) -> Decontaminator:
    return Decontaminator(REFERENCE, method=request.param)


def test_words_are_normalised() -> None:
    assert normalize_words("I DON’T know—really, I don't!") == ["i", "dont", "know", "really", "i", "dont"]
    assert shingles("Feeling low.", 5) == {"feeling low"} and shingles(" ,; ", 5) == set()
    assert shingles("a b c d e f", 5) == {"a b c d e", "b c d e f"}


def test_exact_edited_and_reordered_copies_are_flagged(decon: Decontaminator) -> None:
    exact = decon.match(QUESTIONS["q1"])
    assert exact is not None and exact.question_id == "q1" and exact.score == 1.0
    assert decon.match("  " + QUESTIONS["q2"].upper() + "  ").question_id == "q2"  # case and spacing
    assert decon.match(EDITED).question_id == "q1"
    assert decon.match(REORDERED).question_id == "q2"
    assert decon.match(QUESTIONS["q3"]).question_id == "q3"  # a short question, copied


def test_containment_survives_heavier_edits_that_jaccard_does_not() -> None:
    hit = Decontaminator(REFERENCE, method="ngram").match(REWRITTEN)
    assert hit is not None and hit.question_id == "q1" and hit.score < 0.7
    assert Decontaminator(REFERENCE, method="minhash").match(REWRITTEN) is None  # Jaccard ~0.4


def test_a_question_quoted_inside_a_longer_text_is_flagged_by_containment() -> None:
    hit = Decontaminator(REFERENCE, method="ngram").match(QUOTED)
    assert hit is not None and hit.question_id == "q1" and hit.score == 1.0


@pytest.mark.parametrize("text", UNRELATED)
def test_unrelated_counselling_text_is_not_flagged(decon: Decontaminator, text: str) -> None:
    assert decon.match(text) is None


def test_a_short_common_phrase_is_not_enough() -> None:
    d = Decontaminator(REFERENCE, method="ngram")
    assert d.match("I cannot shake the feeling that") is None  # 7 words of q1: three shingles < min_shared
    assert d.match("yet I cannot shake the feeling that I have lost my best friend") is not None


def test_scan_pairs_reports_counts_by_source() -> None:
    cfg = DecontaminationConfig()
    inputs = [QUESTIONS["q1"], UNRELATED[0], EDITED, UNRELATED[1], REORDERED]
    sources = ["synthetic", "synthetic", "interview", "interview", "synthetic"]
    hits, report = scan_pairs([f"id{i}" for i in range(5)], inputs, sources, cfg, reference=REFERENCE)
    assert [h.index for h in hits] == [0, 2, 4]
    assert report["checked"] == 5 and report["flagged"] == 3 and report["questions_hit"] == 2
    assert report["flagged_by_source"] == {"interview": 1, "synthetic": 2}
    assert [p["id"] for p in report["pairs"]] == ["id0", "id2", "id4"]
    json.dumps(report)


def test_reference_files(tmp_path: Path) -> None:
    assert reference_path(DecontaminationConfig()) == bundled_questions()
    assert reference_path(DecontaminationConfig(), "q.jsonl") == Path("q.jsonl")
    assert reference_path(DecontaminationConfig(against="x.csv")) == Path("x.csv")
    with pytest.raises(ConfigError, match="against: pool needs decontamination.pool"):
        reference_path(DecontaminationConfig(against="pool"))
    bundled = load_reference(bundled_questions())
    assert len(bundled) == 10 and bundled.sha256
    pool = tmp_path / "pool.csv"
    pool.write_text('Question_ID,Questions\n7,"one\nquestion, two lines"\n8,another\n', encoding="utf-8")
    ref = load_reference(pool)
    assert ref.ids == ["7", "8"] and ref.texts[0] == "one\nquestion, two lines"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,answer\n1,x\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv:1: no question column"):
        load_reference(bad)
    with pytest.raises(InputError, match="reference not found"):
        load_reference(tmp_path / "missing.jsonl")


def test_every_turn_of_a_multi_turn_question_is_checked(tmp_path: Path) -> None:
    """A training input copying turn 2 of a two-turn benchmark question is flagged under that question's id."""
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"question_id": "mt1", "turns": [QUESTIONS["q3"], QUESTIONS["q2"]]},
        {"question_id": "s1", "turns": [QUESTIONS["q1"]]},
    ]))
    ref = load_reference(path)
    assert len(ref) == 2 and ref.ids == ["mt1", "mt1", "s1"]
    hits, report = scan_pairs(["p1", "p2"], [REORDERED, UNRELATED[0]], ["synthetic"] * 2, DecontaminationConfig(),
                              reference=ref)
    assert [(h.index, h.question_id) for h in hits] == [(0, "mt1")]
    assert report["reference_questions"] == 2 and report["questions_hit"] == 1


# ---------------------------------------------------------------------------------------------
# What we did not write: the authors' pool (the 200 were drawn from it) and raw synthetic pairs
# ---------------------------------------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.parametrize("method", ["ngram", "minhash"])
def test_every_benchmark_question_is_found_in_the_authors_pool(shared_data: Path, method: str) -> None:
    bench = load_reference(shared_data / "eval" / "question.jsonl")
    pool = load_reference(shared_data / "eval" / "question_pool.csv")
    copies = {t.strip() for t in bench.texts}
    truth = {i for i, t in enumerate(pool.texts) if t.strip() in copies}
    hits = Decontaminator(bench, method=method).scan(pool.texts)
    flagged = {h.index for h in hits}
    assert len(truth) >= 200
    assert truth <= flagged  # recall 1.0 on the pool entries that are the benchmark questions
    assert len(flagged - truth) <= 5  # near-copies beyond them (two by inspection: an excerpt, a variant)
    found = {h.question_id for h in hits}
    assert found == set(bench.ids)  # each of the 200 is found


@pytest.mark.shared
def test_the_authors_synthetic_pairs_do_not_copy_the_benchmark(shared_data: Path) -> None:
    bench = load_reference(shared_data / "eval" / "question.jsonl")
    texts = [json.loads(line)["instruction"]
             for name in ("instructions_with_topics.jsonl", "instructions.jsonl")
             for line in (shared_data / "synthetic" / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(texts) > 2000
    assert Decontaminator(bench).scan(texts) == []
