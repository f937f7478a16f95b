"""Mean score per (model, judge, score name) with a bootstrap CI over questions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mentalchat.core.rubric import ALL_SCORE_NAMES
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.data import ScoreCube

__all__ = ["means_table"]


def means_table(cube: ScoreCube, boot: QuestionBootstrap) -> pd.DataFrame:
    """One row per (model, judge, metric) that has at least one judgment.

    ``n`` counts scored items, ``n_items`` all judgments (scored or not): their difference is
    what the judge could not score, reported rather than silently dropped.
    """
    Q, M, J = cube.shape
    K = len(ALL_SCORE_NAMES)
    vals = cube.values.reshape(Q, M * J * K)
    mask = ~np.isnan(vals)
    x = np.where(mask, vals, 0.0)
    n = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=0) / n
        dev = np.where(mask, vals - mean, 0.0)
        sd = np.sqrt((dev**2).sum(axis=0) / (n - 1))
    sd = np.where(n > 1, sd, np.nan)
    n_items = np.repeat(cube.present.sum(axis=0).reshape(M * J), K)
    keep = n_items > 0
    cols = np.flatnonzero(keep)
    lo, hi = boot.ratio_interval(x[:, cols], mask[:, cols].astype(np.float32))
    mi, ji, ki = np.unravel_index(cols, (M, J, K))
    models = np.asarray(cube.models, dtype=object)
    return pd.DataFrame({
        "model": models[mi],
        "base_model": np.asarray(cube.model_base, dtype=object)[mi],
        "data_config": np.asarray(cube.model_config, dtype=object)[mi],
        "judge": np.asarray(cube.judges, dtype=object)[ji],
        "metric": np.asarray(ALL_SCORE_NAMES, dtype=object)[ki],
        "mean": mean[cols],
        "sd": sd[cols],
        "n": n[cols].astype(np.int64),
        "n_items": n_items[cols].astype(np.int64),
        "ci_low": lo,
        "ci_high": hi,
    })
