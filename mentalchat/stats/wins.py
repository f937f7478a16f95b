"""Which data configuration scores highest for each base model, per judge and score name."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["wins_table"]

COLUMNS = ["judge", "metric", "base_model", "data_config", "model", "mean", "rank", "is_winner",
           "tied", "win_count", "n_bases"]


def wins_table(means: pd.DataFrame, configs: list[str]) -> pd.DataFrame:
    """Rank the configurations (``base`` plus ``configs``) of every base model.

    One row per (judge, metric, base model, configuration): its mean, its rank (1 = best;
    ties share the best rank), whether it wins, and ``win_count``: for how many of the
    ``n_bases`` base models this configuration wins under this judge and metric. Ties count
    as a win for each tied configuration.
    """
    wanted = ["base", *configs]
    df = means[means["data_config"].isin(wanted) & means["base_model"].notna()
               & means["mean"].notna()]
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = df[["judge", "metric", "base_model", "data_config", "model", "mean"]].copy()
    grp = df.groupby(["judge", "metric", "base_model"], sort=False)["mean"]
    best = grp.transform("max")
    df["rank"] = grp.rank(method="min", ascending=False).astype(np.int64)
    df["is_winner"] = np.isclose(df["mean"], best, rtol=0, atol=1e-12)
    n_win = df.groupby(["judge", "metric", "base_model"], sort=False)["is_winner"].transform("sum")
    df["tied"] = df["is_winner"] & (n_win > 1)
    df["win_count"] = df.groupby(["judge", "metric", "data_config"], sort=False)["is_winner"] \
        .transform("sum").astype(np.int64)
    df["n_bases"] = df.groupby(["judge", "metric"], sort=False)["base_model"].transform("nunique") \
        .astype(np.int64)
    order = {c: i for i, c in enumerate(wanted)}
    df["_o"] = df["data_config"].map(order)
    df = df.sort_values(["judge", "metric", "base_model", "_o"]).drop(columns="_o")
    return df[COLUMNS].reset_index(drop=True)
