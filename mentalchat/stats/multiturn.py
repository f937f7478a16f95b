"""Per-turn statistics of multi-turn questions (the ``turn_means`` table).

A multi-turn question is judged once per counsellor turn (``turn`` k = 1..n, the seven metrics
on the k-th reply with the conversation so far in view) and once as a whole conversation
(``turn`` 0: consistency, memory of what the client said, escalation when risk appears later).
These rows are kept out of every other table (:func:`mentalchat.stats.data.build_cube` takes the
single-turn rows only), so adding multi-turn questions to an evaluation does not move the
single-turn numbers; here they get their own means.

Turn k is the means table computed on the cube of turn k's rows, so its mean, ``mean_of_7`` and
CI follow exactly the single-turn rules. Turn 0 has other metric names, so it is reduced
directly, with the same bootstrap: percentile intervals over the questions judged at that turn
(each turn its own question set, since a conversation can stop at a failed turn), seeded as
the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mentalchat.core.model_names import ModelMapConfig
from mentalchat.schemas import JUDGMENTS, TURN_MEANS, SchemaError
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.data import _sort_key, build_cube
from mentalchat.stats.means import means_table

__all__ = ["CONVERSATION_METRICS", "COLUMNS", "has_multi_turn", "multi_turn_rows", "turn_means_table"]

#: What the whole-conversation judgment (turn 0) grades, 1-10 each, in report order.
CONVERSATION_METRICS: tuple[str, ...] = ("consistency", "memory", "risk_escalation")
COLUMNS = TURN_MEANS.columns

_COLS = ["question_id", "model", "base_model", "data_config", "judge", "metric", "score", "turn"]


def multi_turn_rows(tables: Sequence[pa.Table]) -> pa.Table:
    """The rows of ``judgments`` tables with a ``turn`` (v1 tables have none), validated."""
    parts = []
    for t in tables:
        v = JUDGMENTS.validate(t, source="<judgments>")
        if v["turn"].null_count < v.num_rows:
            parts.append(v.filter(pc.is_valid(v["turn"])))
    return pa.concat_tables(parts) if parts else JUDGMENTS.empty()


def has_multi_turn(tables: Sequence[pa.Table]) -> bool:
    """Whether any judgment belongs to a multi-turn question (what turns the section on)."""
    return multi_turn_rows(tables).num_rows > 0


def turn_means_table(
    tables: Sequence[pa.Table],
    model_map: ModelMapConfig | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    mean_of_7_min_metrics: int = 7,
) -> pd.DataFrame:
    """One row per (model, judge, metric, turn) of the multi-turn judgments; empty (with the
    table's columns) when there are none. Rows: turns 1..n in order, then turn 0."""
    rows = multi_turn_rows(tables)
    if rows.num_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    turn = rows["turn"].to_numpy()
    if (turn < 0).any():
        raise SchemaError(f"judgments: turn must be 0 (whole conversation) or 1..n, got {int(turn.min())}")
    frames = []
    for k in sorted({int(t) for t in turn if t > 0}):
        cube = build_cube([rows], model_map, mean_of_7_min_metrics=mean_of_7_min_metrics, turn=k)
        boot = QuestionBootstrap(len(cube.questions), n_boot, seed, level)
        frames.append(means_table(cube, boot).assign(turn=k))
    if (turn == 0).any():
        frames.append(_conversation_means(rows.filter(pc.equal(rows["turn"], 0)), model_map,
                                          n_boot=n_boot, seed=seed, level=level))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def _conversation_means(rows: pa.Table, model_map: ModelMapConfig | None, *, n_boot: int, seed: int,
                        level: float) -> pd.DataFrame:
    """Turn 0: mean per (model, judge, conversation metric) over questions, with bootstrap CI."""
    df = rows.select(_COLS).to_pandas()
    df["question_id"] = df["question_id"].astype(str)
    names = {m.lower(): m for m in CONVERSATION_METRICS}
    df["metric"] = df["metric"].str.strip().str.lower().map(names).fillna(df["metric"])
    unknown = sorted(set(df["metric"]) - set(CONVERSATION_METRICS))
    if unknown:
        raise SchemaError(f"judgments: unknown whole-conversation (turn 0) metric names {unknown}; "
                          f"expected {list(CONVERSATION_METRICS)}")
    key = ["question_id", "model", "judge", "metric"]
    dup = df.duplicated(key)
    if dup.any():
        r = df[dup].iloc[0]
        raise SchemaError(f"judgments: {int(dup.sum())} repeated turn-0 rows, e.g. question {r['question_id']!r}, "
                          f"model {r['model']!r}, judge {r['judge']!r}, metric {r['metric']!r}")
    questions = sorted(df["question_id"].unique(), key=_sort_key)
    models = sorted(df["model"].unique(), key=_sort_key)
    judges = sorted(df["judge"].unique(), key=_sort_key)
    base, config = _model_labels(df, models, model_map)
    Q, M, J, K = len(questions), len(models), len(judges), len(CONVERSATION_METRICS)
    qi = df["question_id"].map({q: i for i, q in enumerate(questions)}).to_numpy()
    mi = df["model"].map({m: i for i, m in enumerate(models)}).to_numpy()
    ji = df["judge"].map({j: i for i, j in enumerate(judges)}).to_numpy()
    ki = df["metric"].map({m: i for i, m in enumerate(CONVERSATION_METRICS)}).to_numpy()
    vals = np.full((Q, M, J, K), np.nan)
    vals[qi, mi, ji, ki] = df["score"].to_numpy(dtype=np.float64, na_value=np.nan)
    present = np.zeros((Q, M, J, K), dtype=bool)
    present[qi, mi, ji, ki] = True
    vals, present = vals.reshape(Q, -1), present.reshape(Q, -1)
    mask = ~np.isnan(vals)
    x = np.where(mask, vals, 0.0)
    n = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=0) / n
        sd = np.sqrt((np.where(mask, vals - mean, 0.0) ** 2).sum(axis=0) / (n - 1))
    sd = np.where(n > 1, sd, np.nan)
    n_items = present.sum(axis=0)
    cols = np.flatnonzero(n_items > 0)
    boot = QuestionBootstrap(Q, n_boot, seed, level)
    lo, hi = boot.ratio_interval(x[:, cols], mask[:, cols].astype(np.float32))
    m_, j_, k_ = np.unravel_index(cols, (M, J, K))
    return pd.DataFrame({
        "model": np.asarray(models, dtype=object)[m_],
        "base_model": np.asarray(base, dtype=object)[m_],
        "data_config": np.asarray(config, dtype=object)[m_],
        "judge": np.asarray(judges, dtype=object)[j_],
        "metric": np.asarray(CONVERSATION_METRICS, dtype=object)[k_],
        "turn": 0,
        "mean": mean[cols],
        "sd": sd[cols],
        "n": n[cols].astype(np.int64),
        "n_items": n_items[cols].astype(np.int64),
        "ci_low": lo,
        "ci_high": hi,
    })


def _model_labels(df: pd.DataFrame, models: list[str], model_map: ModelMapConfig | None
                  ) -> tuple[list[str | None], list[str | None]]:
    """Base model and configuration per model: the first row that has them, else the mapping
    (as :func:`mentalchat.stats.data.build_cube` does)."""
    base: list[str | None] = []
    config: list[str | None] = []
    for name in models:
        d = df[df["model"] == name]
        b = d["base_model"].dropna()
        c = d["data_config"].dropna()
        bv, cv = (b.iloc[0] if len(b) else None), (c.iloc[0] if len(c) else None)
        if cv is None and model_map is not None:
            entry = model_map.lookup(name)
            if entry is not None:
                bv, cv = entry.base, entry.config
        base.append(bv)
        config.append(cv)
    return base, config
