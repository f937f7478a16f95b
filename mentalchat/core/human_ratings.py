"""Human ratings from a CSV file → ``judgments`` rows with judge ``human:<rater>``.

Raters fill one row per (rater, question, model) with one column per metric, so their scores
enter the same tables as the LLM judges' and the agreement statistics compare them directly.
Columns: ``rater``, ``question_id``, ``model``, one per metric (the exact names, "and" for "&",
or the short keys such as ``empathy_validation``), and optionally ``overall``, ``explanation``
(or ``comment``), ``base_model``, ``data_config``. An empty metric cell means "not rated".
Anything else — an unknown column, a score outside 1-10, a repeated row — is an error naming
the file, line and column.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pyarrow as pa

from mentalchat.core.judge_reply import resolve_metric_name
from mentalchat.core.model_names import ModelMapConfig
from mentalchat.core.rubric import METRICS, SCORE_MAX, SCORE_MIN
from mentalchat.errors import MentalchatError
from mentalchat.schemas import JUDGMENTS

__all__ = ["HUMAN_PREFIX", "HumanRatingsError", "read_human_ratings"]

HUMAN_PREFIX = "human:"
_REQUIRED = ("rater", "question_id", "model")
_OPTIONAL = {"overall", "explanation", "comment", "base_model", "data_config"}


class HumanRatingsError(MentalchatError, ValueError):
    """A ratings file that cannot be used; the message names the file, line and column."""


def _score(raw: str, where: str, column: str) -> float | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise HumanRatingsError(f"{where}: column {column!r}: {raw!r} is not a number") from None
    if not math.isfinite(value) or not SCORE_MIN <= value <= SCORE_MAX:
        raise HumanRatingsError(
            f"{where}: column {column!r}: {raw} is outside {SCORE_MIN}-{SCORE_MAX}"
        )
    return value


def read_human_ratings(path: str | Path, model_map: ModelMapConfig | None = None) -> pa.Table:
    """Read a ratings CSV into a ``judgments`` table (7 rows per rated answer)."""
    path = Path(path)
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise HumanRatingsError(f"{path}: cannot open: {exc.strerror}") from None
    rows: list[dict[str, Any]] = []
    with fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise HumanRatingsError(f"{path}:1: missing column(s) {missing}")
        metric_cols: dict[str, str] = {}
        unknown = []
        for col in header:
            if col in _REQUIRED or col.strip().lower() in _OPTIONAL:
                continue
            metric = resolve_metric_name(col, fuzzy=False)
            if metric is None:
                unknown.append(col)
            elif metric in metric_cols.values():
                raise HumanRatingsError(f"{path}:1: two columns for {metric!r}")
            else:
                metric_cols[col] = metric
        if unknown:
            raise HumanRatingsError(
                f"{path}:1: unknown column(s) {unknown}; expected {list(_REQUIRED)}, the metric "
                f"names {list(METRICS)} and optionally {sorted(_OPTIONAL)}"
            )
        absent = [m for m in METRICS if m not in metric_cols.values()]
        if absent:
            raise HumanRatingsError(f"{path}:1: no column for metric(s) {absent}")
        lower = {c.strip().lower(): c for c in header}
        seen: dict[tuple[str, str, str], int] = {}
        for rec in reader:
            line = reader.line_num
            where = f"{path}:{line}"
            if None in rec:
                raise HumanRatingsError(f"{where}: more fields than the header has")
            rater, qid, model = (str(rec[c] or "").strip() for c in _REQUIRED)
            for name, value in zip(_REQUIRED, (rater, qid, model), strict=True):
                if not value:
                    raise HumanRatingsError(f"{where}: column {name!r} is empty")
            key = (rater, qid, model)
            if key in seen:
                raise HumanRatingsError(
                    f"{where}: rater {rater!r} rated question {qid} of {model!r} again "
                    f"(first on line {seen[key]})"
                )
            seen[key] = line
            overall = _score(rec[lower["overall"]] or "", where, "overall") if "overall" in lower else None
            text_col = lower.get("explanation") or lower.get("comment")
            explanation = (rec[text_col] or "").strip() or None if text_col else None
            base = (rec[lower["base_model"]] or "").strip() or None if "base_model" in lower else None
            cfg = (rec[lower["data_config"]] or "").strip() or None if "data_config" in lower else None
            if cfg is None and model_map is not None:
                entry = model_map.lookup(model)
                if entry is not None:
                    base, cfg = entry.base, entry.config
            for col, metric in metric_cols.items():
                score = _score(rec[col] or "", where, col)
                rows.append({
                    "question_id": qid, "model": model, "base_model": base, "data_config": cfg,
                    "judge": f"{HUMAN_PREFIX}{rater}", "metric": metric, "score": score,
                    "overall": overall, "explanation": explanation, "parse_status": "human",
                    "error": None if score is not None else "not rated",
                })
    if not rows:
        return JUDGMENTS.empty()
    return JUDGMENTS.from_rows(rows)
