"""The judge-reply parser: JSON, FastChat text, and the ≥ 99% coverage of the authors' judgments."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mentalchat.core.judge_reply import measure_coverage, parse_judgment, parse_pairwise_verdict, resolve_metric_name
from mentalchat.core.rubric import JUDGMENT_JSON_SCHEMA, KEY_TO_METRIC, METRIC_KEYS, METRICS, judgment_json_schema

SCORES = [8, 7, 9, 6, 7, 5, 8]


def _fastchat_text(values=SCORES, overall=7, style="plain") -> str:
    lines = ["The reply acknowledges the user's worry and suggests next steps.", ""]
    for i, (m, v) in enumerate(zip(METRICS, values, strict=True), 1):
        if style == "plain":
            lines.append(f"{m}: [[{v}]] - reasons for this metric.")
        elif style == "bold-numbered":
            lines.append(f"{i}. **{m}:** [[{v}]] - reasons.")
        elif style == "label-then-rating":
            lines += [f"{m}: the reply does this reasonably well.", f"Rating: [[{v}]]", ""]
        elif style == "score-at-end":
            lines.append(f"{m}: the reply does this reasonably well. [[{v}]]")
    lines += ["", f"Rating: [[{overall}]]"]
    return "\n".join(lines)


def _expect(parsed, values=SCORES, overall=7.0) -> None:
    assert [parsed.scores[m] for m in METRICS] == [float(v) for v in values]
    assert parsed.overall == overall
    assert parsed.status == "ok"


def test_schema_is_valid_json_schema_and_accepts_a_judgment() -> None:
    jsonschema.Draft202012Validator.check_schema(JUDGMENT_JSON_SCHEMA)
    good = {"explanation": "fine", "scores": dict(zip(METRICS, SCORES, strict=True)), "overall": 7}
    jsonschema.validate(good, JUDGMENT_JSON_SCHEMA)
    bad = {**good, "scores": {**good["scores"], METRICS[0]: 11}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, JUDGMENT_JSON_SCHEMA)
    copy = judgment_json_schema()
    copy["properties"]["overall"]["maximum"] = 99
    assert JUDGMENT_JSON_SCHEMA["properties"]["overall"]["maximum"] == 10
    assert list(KEY_TO_METRIC) == list(METRIC_KEYS) and len(METRICS) == 7


def test_structured_json() -> None:
    obj = {"explanation": "Warm and safe.", "scores": dict(zip(METRICS, SCORES, strict=True)), "overall": 7}
    parsed = parse_judgment(json.dumps(obj))
    _expect(parsed)
    assert parsed.source == "json" and parsed.explanation == "Warm and safe."
    assert parsed.mean_of_7 == pytest.approx(sum(SCORES) / 7)


def test_json_in_fence_with_prose_keys_and_strings() -> None:
    scores = {"active_listening": "8", "Empathy and Validation": 7, "Safety and Trustworthiness": 9.0,
              "Open-mindedness and Non-judgement": 6, "Clarity & Encouragement": "7/10",
              "Boundaries and Ethics": 5, "Holistic Approach": 8}
    text = ("Here is my grading.\n```json\n" + json.dumps({"scores": scores, "overall": 7,
                                                          "explanation": "ok"})
            + "\n```\nLet me know if you need more.")
    _expect(parse_judgment(text))


def test_json_out_of_range_and_missing_fall_back_to_text_only_when_absent() -> None:
    scores = dict(zip(METRICS, SCORES, strict=True))
    scores[METRICS[4]] = 11
    del scores[METRICS[6]]
    text = json.dumps({"scores": scores, "overall": 7}) + f"\n{METRICS[6]}: [[4]]"
    parsed = parse_judgment(text)
    assert parsed.scores[METRICS[4]] is None  # out of range: not replaced from elsewhere
    assert any("outside 1-10" in n for n in parsed.notes)
    assert parsed.scores[METRICS[6]] == 4.0  # absent from the JSON: read from the text
    assert parsed.status == "partial"


@pytest.mark.parametrize("style", ["plain", "bold-numbered", "label-then-rating", "score-at-end"])
def test_fastchat_styles(style: str) -> None:
    parsed = parse_judgment(_fastchat_text(style=style))
    _expect(parsed)
    assert parsed.source == "text"


def test_overall_first_then_metrics_and_prose_mentions() -> None:
    # prose mentions of metric names before the scores must not steal the overall rating
    text = ("I consider active listening, empathy and validation, safety and trustworthiness and a "
            "holistic approach.\n\nRating: [[6]]\n\n"
            + "\n".join(f"{m}: [[{v}]]" for m, v in zip(METRICS, SCORES, strict=True)))
    _expect(parse_judgment(text), overall=6.0)


def test_metric_paragraph_then_overall_rating_block() -> None:
    text = "\n".join(
        [f"{m}: the reply covers this." for m in METRICS]
        + ["", "Rating: [[7]]", ""] + [f"{m}: [[{v}]]" for m, v in zip(METRICS, SCORES, strict=True)]
    )
    _expect(parse_judgment(text))


def test_other_formats_slash_ten_tables_bare_labels_and_typos() -> None:
    table = "| Metric | Score |\n|---|---|\n" + "\n".join(
        f"| {m} | {v}/10 |" for m, v in zip(METRICS, SCORES, strict=True)) + "\n\nOverall: 7/10"
    _expect(parse_judgment(table))
    bare = "\n\n".join(f"**{m}**\nScore: {v} out of 10" for m, v in zip(METRICS, SCORES, strict=True))
    _expect(parse_judgment(bare + "\n\nOverall rating: [[7]]"))
    typos = ("Active Listning: 8\nEmpathy & Valdation: 7\nSafety & Trustworthyness: 9\n"
             "Open-mindedness and Non-judgement: 6\nClarity: 7\nBoundaries and Ethics: 5\n"
             "Holistic: 8\nFinal score: 7")
    _expect(parse_judgment(typos))
    one_line = ", ".join(f"{m}: [[{v}]]" for m, v in zip(METRICS, SCORES, strict=True)) + ". Rating: [[7]]"
    _expect(parse_judgment(one_line))


def test_refusals_errors_and_out_of_range() -> None:
    na = parse_judgment("There is no answer to grade.\n\nRating: [[N/A]]\n"
                        + "\n".join(f"{m}: [[N/A]]" for m in METRICS))
    assert na.status == "unparsed" and na.overall is None
    assert any("non-numeric" in n for n in na.notes)
    assert parse_judgment("$ERROR$").notes == ("judge error marker $ERROR$",)
    assert parse_judgment("").status == "unparsed"
    assert parse_judgment(None).status == "unparsed"
    zero = parse_judgment("The reply cannot be rated.\n\nRating: [[0]]")
    assert zero.status == "unparsed" and any("outside 1-10" in n for n in zero.notes)
    partial = parse_judgment("1. Active Listening: 8\n2. Empathy & Validation: 7\n"
                             "3. Safety & Trustworthiness: 0\n")
    assert partial.status == "partial"
    assert partial.scores["Safety & Trustworthiness"] is None
    assert partial.scores["Empathy & Validation"] == 7.0
    assert partial.mean_of_7 is None


def test_numbering_is_not_a_score() -> None:
    text = "\n".join(f"{i}. {m}:\n" for i, m in enumerate(METRICS, 1))  # labels, no scores
    parsed = parse_judgment(text)
    assert parsed.n_scored == 0 and parsed.status == "unparsed"


def test_conflicting_scores_keep_first_and_note() -> None:
    text = _fastchat_text() + f"\n\nOn reflection:\n{METRICS[0]}: [[3]]"
    parsed = parse_judgment(text)
    assert parsed.scores[METRICS[0]] == 8.0
    assert any("also rated 3" in n for n in parsed.notes)


def test_resolve_metric_name() -> None:
    assert resolve_metric_name("**Empathy and Validation:**") == "Empathy & Validation"
    assert resolve_metric_name("Boundaries and Ethics") == "Boundaries & Ethical"
    assert resolve_metric_name("Open-mindedness and Non-judgment") == "Open-mindedness & Non-judgment"
    assert resolve_metric_name("holistic_approach") == "Holistic Approach"
    assert resolve_metric_name("Weather") is None
    assert resolve_metric_name("Empathy & Valdation") == "Empathy & Validation"
    assert resolve_metric_name("Empathy & Valdation", fuzzy=False) is None


@pytest.mark.shared
def test_reads_99_percent_of_the_authors_metric_scores(shared_data) -> None:
    files = sorted(shared_data.glob("fastchat/model_judgment_*/*.jsonl"))
    assert len(files) >= 62
    cov = measure_coverage(files)
    assert set(cov.judgments) == {"gpt-4-1106-preview", "gemini-pro"}
    for judge in cov.judgments:
        assert cov.judgments[judge] == 6200
        assert cov.rate(judge) >= 0.99, (judge, cov.rate(judge))
    # every judgment whose text holds a numeric score parses to some score
    assert sum(cov.status_counts[j].get("unparsed", 0) for j in cov.judgments) <= 60


# --- pairwise verdicts ------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "verdict", "reason"), [
    ('{"reason": "B names a crisis line.", "verdict": "B"}', "B", "B names a crisis line."),
    ('Sure!\n```json\n{"Verdict": "Tie", "Reason": "equally warm"}\n```', "tie", "equally warm"),
    ('{"verdict": "reply a", "explanation": "kinder"}', "A", "kinder"),
    ('{"winner": "[[B]]"}', "B", None),
    ('Reply A listens; Reply B lectures.\n[[A]]', "A", "Reply A listens; Reply B lectures."),
    ("First I leaned to [[A]].\nOn a second reading: [[B]]", "B", None),  # the last decision counts
    ("Both are thin. [[C]]", "tie", "Both are thin."),  # FastChat's tie token
    ("[[ Assistant B ]]", "B", None),
    ("[[TIE]]", "tie", None),
    ("Verdict: a tie", "tie", None),
    ("**Final verdict:** Reply B", "B", None),
    ('{"verdict": "A or B"}\nIf I must: [[A]]', "A", None),  # an unusable JSON verdict falls back to the text
])
def test_pairwise_verdicts(text: str, verdict: str, reason: str | None) -> None:
    got, why = parse_pairwise_verdict(text)
    assert got == verdict
    if reason is not None:
        assert why == reason


@pytest.mark.parametrize("text", [
    None, "", "   ", "I cannot decide between them.",
    "Answer with [[A]], [[B]] or [[tie]].",  # the instructions echoed back, no decision
    '{"verdict": 1, "reason": "x"}', '{"verdict": "maybe"}', "Verdict: clearly the second",
    '{"scores": {"Active Listening": 8}}',
])
def test_pairwise_replies_without_a_verdict(text: str | None) -> None:
    assert parse_pairwise_verdict(text) == (None, None)
