"""Fine-tuned minus base: paired differences over questions, bootstrap CIs, Wilcoxon tests.

A fine-tuned model and its base are compared on the questions both were scored on by the same
judge (paired), for each score name. The CI resamples questions (the same resamples as every
other table); the Wilcoxon signed-rank p-values are corrected for the number of comparisons.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

from mentalchat.core.rubric import ALL_SCORE_NAMES
from mentalchat.schemas import GAINS
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.config import StatsConfig
from mentalchat.stats.data import ScoreCube

__all__ = ["gains_table", "model_pairs"]

COLUMNS = GAINS.columns  # the table's schema is the one list of its columns


def model_pairs(cube: ScoreCube, configs: list[str]) -> tuple[list[tuple[int, int]], list[str]]:
    """(tuned model index, base model index) pairs, and notes on models left unpaired."""
    notes: list[str] = []
    base_of: dict[str, int] = {}
    for i, (base, cfg) in enumerate(zip(cube.model_base, cube.model_config, strict=True)):
        if cfg == "base" and base is not None:
            if base in base_of:
                notes.append(f"base {base!r} has two untuned models; using {cube.models[base_of[base]]!r}")
            else:
                base_of[base] = i
    pairs = []
    for i, (name, base, cfg) in enumerate(zip(cube.models, cube.model_base, cube.model_config,
                                             strict=True)):
        if cfg in configs and base is not None:
            if base in base_of:
                pairs.append((i, base_of[base]))
            else:
                notes.append(f"{name!r} ({cfg}) has no untuned {base!r} in the judgments: no gain")
    order = {c: n for n, c in enumerate(configs)}
    pairs.sort(key=lambda p: (cube.model_base[p[0]] or "", order[cube.model_config[p[0]]],
                              cube.models[p[0]]))
    return pairs, notes


def gains_table(
    cube: ScoreCube, boot: QuestionBootstrap, cfg: StatsConfig
) -> tuple[pd.DataFrame, list[str]]:
    pairs, notes = model_pairs(cube, cfg.fine_tuned_configs)
    Q, M, J = cube.shape
    K = len(ALL_SCORE_NAMES)
    if not pairs:
        return pd.DataFrame(columns=COLUMNS), notes
    tuned = np.array([p[0] for p in pairs])
    base = np.array([p[1] for p in pairs])
    xt = cube.values[:, tuned]  # (Q, P, J, K)
    xb = cube.values[:, base]
    paired = ~np.isnan(xt) & ~np.isnan(xb)
    P = len(pairs)
    G = P * J * K
    xt0 = np.where(paired, xt, 0.0).reshape(Q, G)
    xb0 = np.where(paired, xb, 0.0).reshape(Q, G)
    pm = paired.reshape(Q, G).astype(np.float64)
    n = pm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_t = xt0.sum(0) / n
        mean_b = xb0.sum(0) / n
        diff = mean_t - mean_b
        rel = mean_t / mean_b - 1.0
        if boot.n_boot:
            st = boot.apply(xt0)
            sb = boot.apply(xb0)
            sn = boot.apply(pm)
            d_lo, d_hi = boot.interval((st - sb) / sn)
            r_lo, r_hi = boot.interval(st / sb - 1.0)
        else:
            d_lo = d_hi = r_lo = r_hi = np.full(G, np.nan)

    d_all = (xt0 - xb0)
    stat = np.full(G, np.nan)
    pval = np.full(G, np.nan)
    pmb = paired.reshape(Q, G)
    for g in range(G):
        d = d_all[pmb[:, g], g]
        if d.size == 0:
            continue
        if not np.any(d != 0):
            stat[g], pval[g] = 0.0, 1.0  # no difference at all: nothing to reject
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = wilcoxon(d, zero_method=cfg.wilcoxon_zero_method)
        stat[g], pval[g] = float(res.statistic), float(res.pvalue)

    pi, ji, ki = np.unravel_index(np.arange(G), (P, J, K))
    df = pd.DataFrame({
        "base_model": [cube.model_base[tuned[p]] for p in pi],
        "data_config": [cube.model_config[tuned[p]] for p in pi],
        "model": [cube.models[tuned[p]] for p in pi],
        "base_model_name": [cube.models[base[p]] for p in pi],
        "judge": np.asarray(cube.judges, dtype=object)[ji],
        "metric": np.asarray(ALL_SCORE_NAMES, dtype=object)[ki],
        "n_pairs": n.astype(np.int64),
        "mean_base": mean_b, "mean_tuned": mean_t, "diff": diff,
        "diff_ci_low": d_lo, "diff_ci_high": d_hi,
        "rel_gain": rel, "rel_gain_ci_low": r_lo, "rel_gain_ci_high": r_hi,
        "wilcoxon_stat": stat, "p_value": pval,
    })
    df = df[df["n_pairs"] > 0]
    cfg_order = {c: i for i, c in enumerate(cfg.fine_tuned_configs)}
    metric_order = {m: i for i, m in enumerate(ALL_SCORE_NAMES)}
    df = df.assign(_c=df["data_config"].map(cfg_order), _m=df["metric"].map(metric_order)) \
        .sort_values(["judge", "base_model", "_c", "model", "_m"]) \
        .drop(columns=["_c", "_m"]).reset_index(drop=True)
    df["p_adjusted"] = _adjust(df, cfg)
    alpha = 1.0 - cfg.ci_level
    df["significant"] = df["p_adjusted"] < alpha
    return df[COLUMNS], notes


def _adjust(df: pd.DataFrame, cfg: StatsConfig) -> np.ndarray:
    p = df["p_value"].to_numpy(dtype=float)
    if cfg.correction == "none":
        return p.copy()
    keys = {"all": [], "judge": ["judge"], "judge_metric": ["judge", "metric"]}[cfg.correction_family]
    out = np.full(len(df), np.nan)
    if keys:
        ids = df.groupby(keys, sort=False).ngroup().to_numpy()
        groups = [np.flatnonzero(ids == g) for g in range(ids.max(initial=-1) + 1)]
    else:
        groups = [np.arange(len(df))]
    for idx in groups:
        ok = idx[~np.isnan(p[idx])]
        if ok.size:
            out[ok] = multipletests(p[ok], method=cfg.correction)[1]
    return out
