"""Composition of a training dataset (a ``qa_pairs`` table) for the report.

Counts by source, topic and crisis flag, and word-length summaries of inputs and outputs per
source, as one long table so every number the report prints about the data comes from Parquet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from mentalchat.schemas import QA_PAIRS

__all__ = ["dataset_profile", "word_counts"]

LENGTH_STATS = ("n", "mean", "p10", "p50", "p90", "max")


def word_counts(texts: pd.Series) -> np.ndarray:
    """Whitespace-separated words per text (what the length figures and tables count)."""
    return texts.fillna("").str.split().str.len().to_numpy(dtype=np.int64)


def _lengths(words: np.ndarray) -> dict[str, float]:
    if words.size == 0:
        return {"n": 0.0}
    return {
        "n": float(words.size), "mean": float(words.mean()),
        "p10": float(np.percentile(words, 10)), "p50": float(np.percentile(words, 50)),
        "p90": float(np.percentile(words, 90)), "max": float(words.max()),
    }


def dataset_profile(dataset: pa.Table) -> pd.DataFrame:
    """Long table (facet, group, key, value) describing a ``qa_pairs`` table."""
    df = QA_PAIRS.validate(dataset, source="<dataset>").select(
        ["input", "output", "source", "topic", "crisis_flag", "crisis_escalated"]).to_pandas()
    rows: list[tuple[str, str, str, float]] = []
    for source, n in df["source"].value_counts().sort_index().items():
        rows.append(("source", "all", str(source), float(n)))
    topics = df.assign(topic=df["topic"].fillna("(none)"))
    for (source, topic), n in topics.groupby(["source", "topic"]).size().sort_index().items():
        rows.append(("topic", str(source), str(topic), float(n)))
    rows.append(("crisis", "all", "flagged", float(df["crisis_flag"].sum())))
    rows.append(("crisis", "all", "escalated", float(df["crisis_escalated"].fillna(False).sum())))
    for field in ("input", "output"):
        words = word_counts(df[field])
        for group, mask in [("all", np.ones(len(df), bool)),
                            *[(str(s), (df["source"] == s).to_numpy())
                              for s in sorted(df["source"].unique())]]:
            for key, value in _lengths(words[mask]).items():
                rows.append((f"{field}_words", group, key, value))
    return pd.DataFrame(rows, columns=["facet", "group", "key", "value"])
