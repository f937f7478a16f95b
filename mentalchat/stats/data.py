"""Judgment rows → a dense score cube (question × model × judge × score name).

Every statistic is a reduction over questions of this cube, so it is built once with integer
codes from Arrow's dictionary encoding (no per-row Python) and shared by the means, gains,
wins and agreement modules. Missing scores are NaN; whether a judgment exists at all is kept
separately, so unscored items stay in the denominators that the coverage table reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mentalchat.core.judge_reply import resolve_metric_name
from mentalchat.core.model_names import ModelMapConfig
from mentalchat.core.rubric import ALL_SCORE_NAMES, MEAN_OF_7, METRICS, OVERALL
from mentalchat.schemas import JUDGMENTS, SchemaError

__all__ = ["ScoreCube", "build_cube", "config_rank", "coverage_table", "select_turn"]

N_METRICS = len(METRICS)
K_OVERALL = ALL_SCORE_NAMES.index(OVERALL)
K_MEAN7 = ALL_SCORE_NAMES.index(MEAN_OF_7)
STATUS_ORDER = ("ok", "partial", "unparsed", "failed", "human")


@dataclass
class ScoreCube:
    """Scores of every (question, model, judge) for the 7 metrics, overall and mean_of_7."""

    questions: list[str]
    models: list[str]
    judges: list[str]
    values: np.ndarray  # (Q, M, J, 9) float64, NaN = no score
    status: np.ndarray  # (Q, M, J) int16 index into ``statuses``; -1 = no judgment at all
    statuses: list[str]
    model_base: list[str | None]
    model_config: list[str | None]
    unmapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.questions), len(self.models), len(self.judges)

    @property
    def present(self) -> np.ndarray:
        """(Q, M, J) bool: a judgment row exists (scored or not)."""
        return self.status >= 0


def _sort_key(value: str) -> tuple[int, int | float, str]:
    """Numbers in numeric order, then strings: "2" < "10" < "abc"."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0, value)


def _encode(col: pa.ChunkedArray | pa.Array, name: str) -> tuple[np.ndarray, list]:
    """Integer codes and their values, values sorted so that results do not depend on row order
    (the bootstrap's question columns, the order of models and judges in every table)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    enc = pc.dictionary_encode(arr)
    if enc.indices.null_count:
        raise SchemaError(f"judgments: column {name!r} has nulls")
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    values = enc.dictionary.to_pylist()
    order = sorted(range(len(values)), key=lambda i: _sort_key(values[i]))
    remap = np.empty(len(values), dtype=np.int64)
    remap[order] = np.arange(len(values))
    return remap[codes], [values[i] for i in order]


def select_turn(table: pa.Table, turn: int | None) -> pa.Table:
    """Rows of a validated judgments (or answers) table with ``turn`` null (``turn=None``) or equal
    to ``turn``; a table without the column (v1) is single-turn throughout."""
    if "turn" not in table.column_names:
        return table if turn is None else table.slice(0, 0)
    col = table["turn"]
    if turn is None:
        # all single-turn (today's data): the table itself, untouched
        return table if col.null_count == table.num_rows else table.filter(pc.is_null(col))
    return table.filter(pc.fill_null(pc.equal(col, turn), False))


def _floats(col: pa.ChunkedArray) -> np.ndarray:
    return col.combine_chunks().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def build_cube(
    tables: Sequence[pa.Table],
    model_map: ModelMapConfig | None = None,
    *,
    mean_of_7_min_metrics: int = N_METRICS,
    turn: int | None = None,
) -> ScoreCube:
    """Validate and stack ``judgments`` tables into a :class:`ScoreCube`.

    Only the rows of one ``turn`` enter: by default the single-turn rows (``turn`` null, all of
    a v1 table), so that multi-turn judgments leave every existing table as it was; ``turn=k``
    gives the cube of turn k of the multi-turn questions (:mod:`mentalchat.stats.multiturn`).
    Metric names are resolved through the rubric's aliases; an unknown name or a repeated
    (question, model, judge, metric) row is an error. ``base_model``/``data_config`` come from
    the rows, else from ``model_map``; names neither gives are listed in ``unmapped``.
    """
    cols = ["question_id", "model", "base_model", "data_config", "judge", "metric", "score",
            "overall", "parse_status"]
    valid = [JUDGMENTS.validate(t, source="<judgments>") for t in tables]
    parts = [p for p in (select_turn(v, turn).select(cols) for v in valid) if p.num_rows]
    if not parts:
        if not any(v.num_rows for v in valid):
            raise SchemaError("judgments: no rows to analyse")
        what = "single-turn rows" if turn is None else f"rows of turn {turn}"
        raise SchemaError(f"judgments: no {what} to analyse (only multi-turn ones, or another turn's)")
    table = pa.concat_tables(parts)
    q, questions = _encode(table["question_id"], "question_id")
    m, models = _encode(table["model"], "model")
    j, judges = _encode(table["judge"], "judge")
    k_raw, metric_names = _encode(table["metric"], "metric")
    st, statuses = _encode(table["parse_status"], "parse_status")

    lut = np.empty(len(metric_names), dtype=np.int64)
    unknown = []
    for i, name in enumerate(metric_names):
        resolved = resolve_metric_name(name, fuzzy=False)
        if resolved is None:
            unknown.append(name)
        else:
            lut[i] = METRICS.index(resolved)
    if unknown:
        raise SchemaError(f"judgments: unknown metric names {sorted(unknown)}; expected {METRICS}")
    k = lut[k_raw]
    Q, M, J = len(questions), len(models), len(judges)

    flat = ((q * M + m) * J + j) * N_METRICS + k
    counts = np.bincount(flat, minlength=Q * M * J * N_METRICS)
    if counts.max(initial=0) > 1:
        dup = int(np.flatnonzero(counts > 1)[0])
        kk, rest = dup % N_METRICS, dup // N_METRICS
        jj, rest = rest % J, rest // J
        mm, qq = rest % M, rest // M
        raise SchemaError(
            f"judgments: {int((counts > 1).sum())} repeated rows, e.g. question {questions[qq]!r}, "
            f"model {models[mm]!r}, judge {judges[jj]!r}, metric {METRICS[kk]!r}"
        )

    values = np.full((Q, M, J, len(ALL_SCORE_NAMES)), np.nan)
    score = _floats(table["score"])
    values[q, m, j, k] = score
    overall = _floats(table["overall"])
    has_overall = ~np.isnan(overall)
    values[q[has_overall], m[has_overall], j[has_overall], K_OVERALL] = overall[has_overall]
    metric_vals = values[..., :N_METRICS]
    n_scored = (~np.isnan(metric_vals)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean7 = np.nansum(metric_vals, axis=-1) / n_scored
    values[..., K_MEAN7] = np.where(n_scored >= mean_of_7_min_metrics, mean7, np.nan)

    status = np.full((Q, M, J), -1, dtype=np.int16)
    status[q, m, j] = st.astype(np.int16)

    # base model and data configuration per model: first non-null row value, else the mapping
    model_base: list[str | None] = [None] * M
    model_config: list[str | None] = [None] * M
    for col_name, target in (("base_model", model_base), ("data_config", model_config)):
        col = table[col_name].combine_chunks()
        valid = ~col.is_null().to_numpy(zero_copy_only=False)
        if valid.any():
            idx = np.flatnonzero(valid)
            first = np.full(M, -1, dtype=np.int64)
            first[m[idx][::-1]] = idx[::-1]  # reversed: the earliest row of each model wins
            have = np.flatnonzero(first >= 0)
            vals = col.take(pa.array(first[have])).to_pylist()
            for mi, v in zip(have.tolist(), vals, strict=True):
                target[mi] = v
    unmapped = []
    for mi, name in enumerate(models):
        if model_config[mi] is None and model_map is not None:
            entry = model_map.lookup(name)
            if entry is not None:
                model_base[mi], model_config[mi] = entry.base, entry.config
        if model_config[mi] is None:
            unmapped.append(name)
    return ScoreCube(
        questions=[str(x) for x in questions], models=list(models), judges=list(judges),
        values=values, status=status, statuses=list(statuses), model_base=model_base,
        model_config=model_config, unmapped=sorted(unmapped),
    )


def coverage_table(cube: ScoreCube) -> pd.DataFrame:
    """Per (model, judge): judgments, their parse status, and scores that are missing."""
    present = cube.present
    n_items = present.sum(axis=0)  # (M, J)
    metric_missing = np.isnan(cube.values[..., :N_METRICS]) & present[..., None]
    status_counts = {}
    known = [s for s in STATUS_ORDER]
    for s in known:
        if s in cube.statuses:
            code = cube.statuses.index(s)
            status_counts[s] = (cube.status == code).sum(axis=0)
        else:
            status_counts[s] = np.zeros_like(n_items)
    other = n_items - sum(status_counts.values())
    M, J = n_items.shape
    mi, ji = np.meshgrid(np.arange(M), np.arange(J), indexing="ij")
    return pd.DataFrame({
        "model": np.asarray(cube.models, dtype=object)[mi.ravel()],
        "base_model": np.asarray(cube.model_base, dtype=object)[mi.ravel()],
        "data_config": np.asarray(cube.model_config, dtype=object)[mi.ravel()],
        "judge": np.asarray(cube.judges, dtype=object)[ji.ravel()],
        "n_items": n_items.ravel().astype(np.int64),
        **{f"n_{s}": status_counts[s].ravel().astype(np.int64) for s in known},
        "n_other_status": other.ravel().astype(np.int64),
        "n_all_metrics": (present & ~metric_missing.any(-1)).sum(0).ravel().astype(np.int64),
        "n_missing_metric_scores": metric_missing.sum(axis=(0, 3)).ravel().astype(np.int64),
        "n_missing_overall": (np.isnan(cube.values[..., K_OVERALL]) & present).sum(0).ravel()
        .astype(np.int64),
    }).query("n_items > 0").reset_index(drop=True)


def config_rank(data_config: pd.Series, configs: Sequence[str]) -> pd.Series:
    """Sort key of the report's configuration order: base, the fine-tuned ones in ``configs``,
    baselines, then anything else."""
    order = {c: i for i, c in enumerate(["base", *configs, "baseline"])}
    return data_config.map(order).fillna(99)
