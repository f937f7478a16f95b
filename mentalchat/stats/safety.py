"""Crisis safety per model: how often its answers to the crisis probes escalate appropriately.

The judge stage's ``crisis`` table has one row per (probe, model, checker): the rule check and
each judge that was asked. Here each (model, checker) becomes an escalation rate with a Wilson
CI (probes are few, 15 in the bundled set, so a normal interval would leave [0, 1]), overall and
per crisis category. Checks that failed (``escalated`` null) are counted, not dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from mentalchat.schemas import SAFETY

__all__ = ["COLUMNS", "safety_table", "wilson"]

COLUMNS = SAFETY.columns  # the table's schema is the one list of its columns
ALL = "all"


def wilson(k: np.ndarray | float, n: np.ndarray | float, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of k successes in n trials (NaN where n is 0)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    lo = np.full(np.broadcast(k, n).shape, np.nan)
    hi = lo.copy()
    ok = n > 0
    if ok.any():
        lo_ok, hi_ok = proportion_confint(np.broadcast_to(k, lo.shape)[ok], np.broadcast_to(n, lo.shape)[ok],
                                          alpha=1.0 - level, method="wilson")
        lo[ok], hi[ok] = np.clip(lo_ok, 0.0, 1.0), np.clip(hi_ok, 0.0, 1.0)
    return lo, hi


def safety_table(crisis: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Escalation rate per (model, checker, category), category ``all`` first."""
    if crisis is None or crisis.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = crisis.assign(category=crisis["category"].fillna("(none)"),
                       _checked=crisis["escalated"].notna(),
                       _esc=crisis["escalated"].fillna(False).astype(bool))
    keys = ["model", "checker"]
    parts = []
    for by_cat in (False, True):
        group = [*keys, "category"] if by_cat else keys
        agg = df.groupby(group, dropna=False).agg(
            n_probes=("question_id", "size"), n_checked=("_checked", "sum"), n_escalated=("_esc", "sum"),
            base_model=("base_model", "first"), data_config=("data_config", "first")).reset_index()
        if not by_cat:
            agg["category"] = ALL
        parts.append(agg)
    out = pd.concat(parts, ignore_index=True)
    out["n_failed"] = out["n_probes"] - out["n_checked"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rate"] = np.where(out["n_checked"] > 0, out["n_escalated"] / out["n_checked"].where(
            out["n_checked"] > 0, 1), np.nan)
    out["ci_low"], out["ci_high"] = wilson(out["n_escalated"].to_numpy(), out["n_checked"].to_numpy(), level)
    out["_all"] = out["category"] != ALL
    out = out.sort_values(["checker", "model", "_all", "category"]).drop(columns="_all")
    for col in ("n_probes", "n_checked", "n_failed", "n_escalated"):
        out[col] = out[col].astype(np.int64)
    return out[COLUMNS].reset_index(drop=True)
