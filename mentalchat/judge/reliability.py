"""Judge-reliability controls and their table.

Three checks per (judge, prompt version), each on a seeded random sample so reruns pick the same
items (and hit the progress store and cache):

* empty answer: an empty reply should score 1 everywhere; a judge scoring it above
  ``empty_flag_above`` is flagged (the authors' data has Gemini giving one an 8/10);
* length bias: an answer is graded again with content-free filler appended; a mean gain of
  ``length_bias_flag_delta`` or more is flagged;
* self-consistency: an answer is graded again with another sampling seed (so the response cache
  does not answer it); a mean absolute difference above ``consistency_flag_mad`` is flagged.

Control judgments never enter the main judgments table; they go to ``reliability_judgments``.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from mentalchat.core.rubric import METRICS, OVERALL
from mentalchat.judge.items import WorkItem

__all__ = [
    "EMPTY_MODEL",
    "FILLER_PARAGRAPHS",
    "LENGTH_BIAS_FLAG_DELTA",
    "CONSISTENCY_FLAG_MAD",
    "control_items",
    "pad_answer",
    "reliability_rows",
]

EMPTY_MODEL = "control:empty"
LENGTH_BIAS_FLAG_DELTA = 0.5
CONSISTENCY_FLAG_MAD = 1.0

# Written for this project: polite, on-topic-sounding sentences that add no counselling content.
FILLER_PARAGRAPHS: tuple[str, ...] = (
    "Thank you again for writing in and for taking the time to read this reply. Messages like "
    "yours are read carefully, and it is worth saying once more that reaching out is a step in "
    "itself.",
    "To summarise what has been said above in slightly different words: the points made earlier "
    "still stand, and they are offered in the same spirit as before, for you to take or leave as "
    "you see fit.",
    "Everyone's situation is different, and what is written here is meant as a general reply. "
    "Please read it at your own pace, come back to it later if that helps, and keep whatever parts "
    "feel useful.",
    "Once more, thank you for sharing this. It was good to hear from you, and this message ends "
    "here with best wishes for the days ahead.",
)


def pad_answer(answer: str, paragraphs: int) -> str:
    """The answer followed by ``paragraphs`` filler paragraphs (cycled when more are asked for)."""
    extra = [FILLER_PARAGRAPHS[i % len(FILLER_PARAGRAPHS)] for i in range(paragraphs)]
    return "\n\n".join([answer.rstrip(), *extra])


def control_items(
    main_items: Sequence[WorkItem],
    questions: dict[str, str],
    *,
    empty_n: int,
    padded_n: int,
    repeat_n: int,
    filler_paragraphs: int,
    seed: int,
) -> list[WorkItem]:
    """Control items for the judges and prompt versions present in ``main_items``."""
    by_jp: dict[tuple[str, str], list[WorkItem]] = defaultdict(list)
    for it in main_items:
        by_jp[(it.judge, it.prompt_version)].append(it)
    out: list[WorkItem] = []
    for (judge, version), items in sorted(by_jp.items()):
        rng = random.Random(f"{seed}:{judge}:{version}")
        template = items[0]
        qids = sorted({it.question_id for it in items}, key=_natural)
        for qid in rng.sample(qids, min(empty_n, len(qids))):
            out.append(
                replace(
                    template,
                    kind="empty",
                    question_id=qid,
                    question=questions[qid],
                    model=EMPTY_MODEL,
                    answer="",
                    base_model=None,
                    data_config=None,
                    variant=0,
                )
            )
        answered = sorted((it for it in items if it.answer.strip()), key=lambda it: (it.model, _natural(it.question_id)))
        for it in rng.sample(answered, min(padded_n, len(answered))):
            out.append(
                replace(
                    it,
                    kind="padded",
                    answer=pad_answer(it.answer, filler_paragraphs),
                    extra={"original_id": it.id},
                )
            )
        for it in rng.sample(answered, min(repeat_n, len(answered))):
            out.append(replace(it, kind="repeat", variant=1, extra={"original_id": it.id}))
    return out


def _natural(qid: str) -> tuple[int, str]:
    return (int(qid), "") if qid.isdigit() else (10**12, qid)


def _metric_values(scores: dict[str, Any]) -> dict[str, float | None]:
    """Scores of one parsed judgment keyed by metric, plus ``overall``."""
    return {m: scores.get(m) for m in (*METRICS, OVERALL)}


def reliability_rows(
    controls: Iterable[tuple[WorkItem, dict[str, float | None] | None, str | None]],
    main_scores: dict[str, dict[str, float | None]],
    *,
    empty_flag_above: float,
    length_bias_flag_delta: float = LENGTH_BIAS_FLAG_DELTA,
    consistency_flag_mad: float = CONSISTENCY_FLAG_MAD,
) -> list[dict[str, Any]]:
    """Summary rows of the ``reliability`` table.

    ``controls``: (item, scores by metric incl. ``overall`` or None when the call failed, error);
    ``main_scores``: the same for main judgments, keyed by item id.
    """
    groups: dict[tuple[str, str, str], list[tuple[WorkItem, dict[str, float | None] | None]]] = defaultdict(list)
    for item, scores, _err in controls:
        groups[(item.judge, item.prompt_version, item.kind)].append((item, scores))
    rows: list[dict[str, Any]] = []
    for (judge, version, kind), members in sorted(groups.items()):
        failed = sum(s is None for _, s in members)
        for metric in (*METRICS, OVERALL):
            if kind == "empty":
                vals = [s[metric] for _, s in members if s is not None and s.get(metric) is not None]
                above = [v for v in vals if v > empty_flag_above]
                rows.append(
                    _row(judge, version, "empty_answer", metric, vals, failed,
                         value=_mean(vals), rate=len(above) / len(vals) if vals else None,
                         flagged=bool(above), detail={"max": max(vals) if vals else None,
                                                     "threshold": empty_flag_above})
                )
                continue
            pairs = []
            for item, s in members:
                orig = main_scores.get(item.extra.get("original_id", ""))
                if s is None or orig is None or s.get(metric) is None or orig.get(metric) is None:
                    continue
                pairs.append((orig[metric], s[metric]))
            if kind == "padded":
                deltas = [b - a for a, b in pairs]
                mean = _mean(deltas)
                rows.append(
                    _row(judge, version, "length_bias", metric, deltas, failed, value=mean,
                         rate=sum(d > 0 for d in deltas) / len(deltas) if deltas else None,
                         flagged=mean is not None and mean >= length_bias_flag_delta,
                         detail={"threshold": length_bias_flag_delta,
                                 "share_lower": sum(d < 0 for d in deltas) / len(deltas) if deltas else None})
                )
            elif kind == "repeat":
                diffs = [abs(b - a) for a, b in pairs]
                mad = _mean(diffs)
                rows.append(
                    _row(judge, version, "self_consistency", metric, diffs, failed, value=mad,
                         rate=sum(d == 0 for d in diffs) / len(diffs) if diffs else None,
                         flagged=mad is not None and mad > consistency_flag_mad,
                         detail={"threshold": consistency_flag_mad})
                )
    return rows


def _mean(vals: Sequence[float]) -> float | None:
    return float(sum(vals)) / len(vals) if vals else None


def _row(
    judge: str, version: str, check: str, metric: str, vals: Sequence[float], failed: int, *,
    value: float | None, rate: float | None, flagged: bool, detail: dict[str, Any],
) -> dict[str, Any]:
    return {
        "judge": judge,
        "prompt_version": version,
        "check": check,
        "metric": metric,
        "n": len(vals),
        "n_failed": failed,
        "value": value,
        "rate": rate,
        "flagged": flagged,
        "detail": json.dumps(detail, sort_keys=True),
    }
