"""Publishing a judge sweep: every planned item becomes rows, scored or failed with a reason.

Structured replies are validated against the judgment schema and read directly; anything else
goes through the tolerant text parser (:func:`mentalchat.core.judge_reply.parse_judgment`).
Pairwise items become ``pairwise`` rows and the position-bias rows of ``reliability``
(:mod:`.pairwise`).
Items the run never called (the budget, an interruption) get rows too, so no denominator loses
them unseen. Unscored items are counted by kind (:func:`failure_kind`). Everything the judges wrote
and every error is scrubbed of API keys before it reaches a table.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from mentalchat.core.judge_reply import parse_crisis_verdict, parse_judgment
from mentalchat.core.rubric import CONVERSATION_METRICS, JUDGMENT_JSON_SCHEMA, METRICS, OVERALL
from mentalchat.engine.types import ErrorKind
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.human import write_judgments
from mentalchat.judge.items import WorkItem
from mentalchat.judge.multiturn import conversation_scores
from mentalchat.judge.pairwise import pair_verdict, pairwise_row, position_bias_rows
from mentalchat.judge.plan import Plan
from mentalchat.judge.reliability import reliability_rows
from mentalchat.judge.store import ProgressStore
from mentalchat.schemas import get_table, write_table
from mentalchat.secrets import Scrubber

__all__ = ["BUDGET_SKIP", "INTERRUPTED", "Published", "failure_kind", "judgment_rows", "publish", "reply_unreadable"]

BUDGET_SKIP = "not called: budget cap reached"
INTERRUPTED = "not called: run interrupted"


@dataclass
class Published:
    """What the tables hold: items scored and failed, failures by kind, the files written."""

    scored: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    #: judge label -> its position_bias reliability row (pairwise judging only)
    position_bias: dict[str, dict[str, Any]] = field(default_factory=dict)


_JUDGMENT_VALIDATOR = jsonschema.Draft202012Validator(JUDGMENT_JSON_SCHEMA)


def _scores_from(item: WorkItem, rec: dict[str, Any]) -> tuple[dict[str, float | None], float | None, str | None, str, str | None]:
    """(scores, overall, explanation, parse_status, error) for a finished call."""
    if rec.get("error") or rec.get("text") is None:
        return dict.fromkeys(METRICS), None, None, "failed", rec.get("error") or "no text returned"
    text = rec["text"]
    if item.structured:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if obj is not None and _JUDGMENT_VALIDATOR.is_valid(obj):
            scores = {m: float(obj["scores"][m]) for m in METRICS}
            return scores, float(obj["overall"]), obj["explanation"], "ok", None
    parsed = parse_judgment(text)
    error = None
    if parsed.status == "unparsed":
        error = "unparsed: " + ("; ".join(parsed.notes) or "no scores found in the judge's reply")
    elif parsed.status == "partial":
        error = None
    return dict(parsed.scores), parsed.overall, parsed.explanation, parsed.status, error


def reply_unreadable(item: WorkItem, rec: dict[str, Any] | None) -> bool:
    """A call that answered with text the stage cannot read (worth asking again), not one that failed."""
    if rec is None or rec.get("error") or rec.get("text") is None:
        return False
    if item.kind == "crisis":
        return parse_crisis_verdict(rec["text"])[0] is None
    if item.kind == "pairwise":
        return pair_verdict(item, rec["text"])[0] is None
    if item.kind == "conversation":
        return conversation_scores(rec["text"])[2] == "unparsed"
    return _scores_from(item, rec)[3] == "unparsed"


def _conversation_scores_from(rec: dict[str, Any] | None, skip_reason: str | None):
    if rec is None:
        return dict.fromkeys(CONVERSATION_METRICS), None, "failed", skip_reason
    if rec.get("error") or rec.get("text") is None:
        return dict.fromkeys(CONVERSATION_METRICS), None, "failed", rec.get("error") or "no text returned"
    scores, expl, status = conversation_scores(rec["text"])
    error = "unparsed: no conversation scores found in the judge's reply" if status == "unparsed" else None
    return scores, expl, status, error


def judgment_rows(item: WorkItem, rec: dict[str, Any] | None, skip_reason: str | None) -> list[dict[str, Any]]:
    """Judgments rows of one item: the 7 metrics, or the conversation metrics for a turn-0 item.

    Multi-turn items carry their ``turn``; single-turn rows get no ``turn`` key (null in the table).
    """
    metrics: tuple[str, ...] = METRICS
    if item.kind == "conversation":
        metrics = CONVERSATION_METRICS
        scores, expl, status, error = _conversation_scores_from(rec, skip_reason)
        overall = None
        rec = rec or {}
    elif rec is None:
        scores, overall, expl, status, error = dict.fromkeys(METRICS), None, None, "failed", skip_reason
        rec = {}
    else:
        scores, overall, expl, status, error = _scores_from(item, rec)
    common = {
        "question_id": item.question_id,
        "model": item.model,
        "base_model": item.base_model,
        "data_config": item.data_config,
        "judge": item.judge,
        "overall": overall,
        "explanation": expl,
        "parse_status": status,
        "raw_text": rec.get("text"),
        "prompt_version": item.prompt_version,
        "tokens_in": rec.get("tokens_in"),
        "tokens_out": rec.get("tokens_out"),
        "cost_usd": rec.get("cost_usd"),
        "latency_s": rec.get("latency_s"),
        "attempts": rec.get("attempts"),
    }
    if item.turn is not None:
        common["turn"] = item.turn
    rows = []
    for m in metrics:
        score = scores.get(m)
        row_error = error
        if score is None and error is None:
            row_error = f"no score for {m} in the judge's reply"
        rows.append({**common, "metric": m, "score": score, "error": row_error})
    return rows


def failure_kind(rec: dict[str, Any] | None, skipped_for_budget: bool) -> ErrorKind:
    """Why an item ended unscored: the engine's error kind, ``unparsed``, or why it was never called."""
    if rec is None:
        return "budget" if skipped_for_budget else "interrupted"
    if rec.get("error"):
        return rec.get("error_kind") or "other"
    if rec.get("text") is None:
        return "empty"
    return "unparsed"


def publish(
    cfg: JudgeConfig,
    plan: Plan,
    store: ProgressStore,
    skipped_ids: set[str],
    output: Path,
    scrubber: Scrubber,
) -> Published:
    """Write ``judgments.parquet`` (+ reliability, crisis and pairwise tables when enabled) for every planned item."""
    main_rows: list[dict[str, Any]] = []
    pair_rows: list[dict[str, Any]] = []
    control_rows: list[dict[str, Any]] = []
    crisis_rows = list(plan.crisis_rule_rows)
    main_scores: dict[str, dict[str, float | None]] = {}
    controls: list[tuple[WorkItem, dict[str, float | None] | None, str | None]] = []
    failures: dict[str, int] = defaultdict(int)
    scored = failed = 0
    records = store.records()
    for item in plan.items:
        rec = records.get(item.id)
        skip = BUDGET_SKIP if item.id in skipped_ids else (None if rec is not None else INTERRUPTED)
        if item.kind == "crisis":
            if rec is None or rec.get("error") or rec.get("text") is None:
                verdict, reason = None, None
                err = (rec or {}).get("error") or skip or "no text returned"
            else:
                verdict, reason = parse_crisis_verdict(rec["text"])
                err = None if verdict is not None else "unparsed: no escalation verdict in the judge's reply"
            crisis_rows.append(
                {
                    "question_id": item.question_id, "category": plan.probe_categories.get(item.question_id),
                    "model": item.model, "base_model": item.base_model, "data_config": item.data_config,
                    "checker": item.judge, "escalated": verdict, "detail": reason,
                    "raw_text": (rec or {}).get("text"), "prompt_version": item.prompt_version, "error": err,
                }
            )
            ok = verdict is not None
        elif item.kind == "pairwise":
            pair_rows.append(pairwise_row(item, rec, skip))
            ok = pair_rows[-1]["winner"] is not None
        else:
            rows = judgment_rows(item, rec, skip)
            ok = any(r["score"] is not None for r in rows) or rows[0]["overall"] is not None
            score_map: dict[str, float | None] | None = None
            if ok:
                score_map = {r["metric"]: r["score"] for r in rows}
                score_map[OVERALL] = rows[0]["overall"]
            if item.kind in ("main", "conversation"):
                main_rows.extend(rows)
                if score_map is not None and item.kind == "main" and item.turn is None:
                    main_scores[item.id] = score_map
            else:
                for r in rows:
                    r["model"] = f"{item.model}" if item.kind == "empty" else f"control:{item.kind}:{item.model}"
                control_rows.extend(rows)
                controls.append((item, score_map, rows[0]["error"]))
        if ok:
            scored += 1
        else:
            failed += 1
            failures[failure_kind(rec, item.id in skipped_ids)] += 1

    for rows in (main_rows, control_rows, crisis_rows, pair_rows):
        for r in rows:
            for key in ("raw_text", "explanation", "detail", "reason"):  # what the judge wrote
                if r.get(key) is not None:
                    r[key] = scrubber.content(r[key])
            if r.get("error") is not None:
                r["error"] = scrubber.text(r["error"])

    out = {}
    out["judgments"] = write_judgments(get_table("judgments").from_rows(main_rows), output)
    rel: list[dict[str, Any]] = []
    if cfg.reliability.enabled:
        out["reliability_judgments"] = write_table(
            get_table("judgments").from_rows(control_rows), output / "reliability_judgments.parquet", "judgments"
        )
        rel = reliability_rows(controls, main_scores, empty_flag_above=cfg.reliability.empty_flag_above)
    if cfg.pairwise.enabled:  # position bias is a reliability check, reported even with the controls off
        pairs = get_table("pairwise").from_rows(pair_rows)
        out["pairwise"] = write_table(pairs, output / "pairwise.parquet", "pairwise")
        rel += position_bias_rows(pairs.to_pandas(), [cfg.judge_label(j) for j in cfg.judges],
                                  cfg.pairwise.prompt_version, flag_rate=cfg.pairwise.position_bias_flag_rate)
    if cfg.reliability.enabled or cfg.pairwise.enabled:
        out["reliability"] = write_table(get_table("reliability").from_rows(rel), output / "reliability.parquet", "reliability")
    if cfg.crisis.enabled:
        out["crisis"] = write_table(get_table("crisis").from_rows(crisis_rows), output / "crisis.parquet", "crisis")
    bias = {r["judge"]: r for r in rel if r["check"] == "position_bias"}
    return Published(scored, failed, dict(failures), {k: str(v) for k, v in out.items()}, bias)
