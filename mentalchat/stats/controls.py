"""Judge controls for the report: did each judge pass the reliability checks, and how sure is that.

Four checks per judge, read from the judge stage's folder: empty answer, padded answer
(``length_bias``), repeat consistency (``self_consistency``) from its ``reliability`` table, and
position bias from the same table (``position_bias`` rows) or, failing those, from its
``pairwise`` table (an answer pair judged in both orders: a verdict that changes when the order
swaps is a flip). Each becomes one row of ``judge_controls`` with Wilson CIs on its proportions,
a ``FAILED`` status when any metric is flagged, and a ``not run`` row for every judge and check
that has no data, so a missing control is said rather than left out.

Without the judge stage (the authors' FastChat judgments), the empty-answer check can still be
read off the judgments of answers that are empty (``empty_answer_rows``); the others cannot.
The pairwise verdicts also become win rates per model pair (``pairwise_wins``) by the judge
stage's rule for the two orders: a pair's verdict is the winner both orders agree on, else a tie
(opposite winners are counted apart as ``inconsistent``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mentalchat.core.rubric import ALL_SCORE_NAMES, METRICS, OVERALL
from mentalchat.schemas import JUDGE_CONTROLS, PAIRWISE_WINS
from mentalchat.stats.data import ScoreCube
from mentalchat.stats.safety import wilson

__all__ = [
    "CHECKS",
    "COLUMNS",
    "PAIRWISE_COLUMNS",
    "empty_answer_rows",
    "judge_controls_table",
    "pairwise_position_rows",
    "pairwise_wins_table",
]

#: the reliability table's check names, in report order, and how the report calls them
CHECKS = {"empty_answer": "empty answer", "length_bias": "padded answer",
          "self_consistency": "repeat consistency", "position_bias": "position bias"}
#: an empty answer scored above this fails the judge (the judge stage's default)
EMPTY_FLAG_ABOVE = 1.0
#: answers of at most this many words count as empty when the control is read off judgments (the
#: authors' empty answers are whitespace, "It's", "ether.": a judge should give each a 1)
EMPTY_MAX_WORDS = 3
#: a flip rate above this fails the judge when the reliability table does not say (the judge
#: stage's default, judge.pairwise.position_bias_flag_rate)
POSITION_FLIP_FLAG = 0.35
HUMAN_PREFIX = "human:"
COLUMNS = JUDGE_CONTROLS.columns  # the table's schema is the one list of its columns
PAIRWISE_COLUMNS = PAIRWISE_WINS.columns  # the table's schema is the one list of its columns
#: value of each check that is a proportion (gets a Wilson CI); rate always is one
_VALUE_IS_SHARE = {"position_bias"}


def _threshold(details: pd.Series) -> float:
    for d in details.dropna():
        try:
            t = json.loads(d).get("threshold")
        except (ValueError, AttributeError):
            continue
        if t is not None:
            return float(t)
    return np.nan


def _note(details: pd.Series) -> str | None:
    """The judge stage's own explanation of an unmeasured check (``detail.note``), if any."""
    for d in details.dropna():
        try:
            note = json.loads(d).get("note")
        except (ValueError, AttributeError):
            continue
        if note:
            return str(note)
    return None


def _summarise(rel: pd.DataFrame, level: float, source: str) -> list[dict]:
    rows = []
    for (judge, version, check), d in rel.groupby(["judge", "prompt_version", "check"], sort=True):
        main = d[d["metric"] == OVERALL]
        if main.empty:
            main = d
        n = int(main["n"].max())
        value = float(main["value"].mean()) if main["value"].notna().any() else np.nan
        rate = float(main["rate"].mean()) if main["rate"].notna().any() else np.nan
        flagged = bool(d["flagged"].fillna(False).any())
        status = "FAILED" if flagged else "passed"
        detail = ", ".join(sorted(d.loc[d["flagged"].fillna(False), "metric"])) or None
        if n == 0 and not flagged:  # nothing was measured: say so rather than "passed"
            status = "not run"
            detail = _note(d["detail"]) if "detail" in d else None
            detail = detail or f"{int(main['n_failed'].max())} items, none scored (failed or declined calls)"
        row = {"judge": judge, "prompt_version": version, "check": check, "n": n,
               "n_failed": int(main["n_failed"].max()), "value": value, "rate": rate,
               "metrics_flagged": int(d["flagged"].fillna(False).sum()), "n_metrics": int(len(d)),
               "flagged": flagged, "status": status,
               "threshold": _threshold(d["detail"]) if "detail" in d else np.nan, "source": source,
               "detail": detail}
        if np.isfinite(rate):
            lo, hi = wilson(round(rate * n), n, level)
            row["rate_ci_low"], row["rate_ci_high"] = float(lo), float(hi)
        if check in _VALUE_IS_SHARE and np.isfinite(value):
            lo, hi = wilson(round(value * n), n, level)
            row["value_ci_low"], row["value_ci_high"] = float(lo), float(hi)
        rows.append(row)
    return rows


def pairwise_position_rows(pairwise: pd.DataFrame, *, flip_flag: float = POSITION_FLIP_FLAG) -> pd.DataFrame:
    """``reliability``-style position_bias rows computed from pairwise verdicts: value = share of
    answer pairs whose winner changes when the order swaps, rate = share of decisive verdicts
    that chose the answer shown first."""
    ok = pairwise[pairwise["winner"].notna() & pairwise["error"].isna()] if not pairwise.empty else pairwise
    rows = []
    keys = ["judge", "prompt_version"]
    for (judge, version), d in ok.groupby(keys, sort=True):
        both = d.pivot_table(index=["question_id", "model_a", "model_b"], columns="order", values="winner",
                             aggfunc="first")
        both = both.dropna() if {"ab", "ba"} <= set(both.columns) else both.iloc[0:0]
        n = len(both)
        flips = int((both["ab"] != both["ba"]).sum()) if n else 0
        decisive = d[d["verdict_position"].isin(["first", "second"])]
        first = float((decisive["verdict_position"] == "first").mean()) if len(decisive) else np.nan
        value = flips / n if n else np.nan
        rows.append({"judge": judge, "prompt_version": version, "check": "position_bias", "metric": OVERALL,
                     "n": n, "n_failed": int(len(pairwise[(pairwise["judge"] == judge)
                                                          & (pairwise["prompt_version"] == version)]) - len(d)),
                     "value": value, "rate": first, "flagged": bool(n and value > flip_flag),
                     "detail": json.dumps({"threshold": flip_flag})})
    return pd.DataFrame(rows, columns=["judge", "prompt_version", "check", "metric", "n", "n_failed", "value",
                                       "rate", "flagged", "detail"])


def empty_answer_rows(cube: ScoreCube, words: np.ndarray, *, threshold: float = EMPTY_FLAG_ABOVE,
                      max_words: int = EMPTY_MAX_WORDS) -> pd.DataFrame:
    """``reliability``-style empty_answer rows from the judgments of answers of at most
    ``max_words`` words (the authors' data has a few), per judge and score name."""
    empty = words <= max_words  # (Q, M); NaN (unknown length) compares False
    rows = []
    if not empty.any():
        return pd.DataFrame()
    for j, judge in enumerate(cube.judges):
        if judge.startswith(HUMAN_PREFIX):
            continue
        judged = empty & cube.present[:, :, j]
        if not judged.any():
            continue
        for metric in (*METRICS, OVERALL):
            v = cube.values[:, :, j, ALL_SCORE_NAMES.index(metric)][judged]
            vals = v[~np.isnan(v)]
            rows.append({"judge": judge, "prompt_version": "(as judged)", "check": "empty_answer",
                         "metric": metric, "n": int(vals.size), "n_failed": int(judged.sum() - vals.size),
                         "value": float(vals.mean()) if vals.size else np.nan,
                         "rate": float((vals > threshold).mean()) if vals.size else np.nan,
                         "flagged": bool((vals > threshold).any()),
                         "detail": json.dumps({"threshold": threshold, "max_words": max_words,
                                               "max": float(vals.max()) if vals.size else None})})
    return pd.DataFrame(rows)


def judge_controls_table(
    judges: list[str],
    *,
    reliability: pd.DataFrame | None,
    pairwise: pd.DataFrame | None,
    derived_empty: pd.DataFrame | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per (judge, prompt version, check), and a ``not run`` row per judge and check
    without data (human raters are not judges here)."""
    rows: list[dict] = []
    rel = reliability if reliability is not None else pd.DataFrame()
    if not rel.empty:
        rows += _summarise(rel, level, "reliability table")
    have_position = {r["judge"] for r in rows if r["check"] == "position_bias"}
    if pairwise is not None and not pairwise.empty:
        pos = pairwise_position_rows(pairwise)
        pos = pos[~pos["judge"].isin(have_position)]
        if not pos.empty:
            rows += _summarise(pos, level, "pairwise table")
    have_empty = {r["judge"] for r in rows if r["check"] == "empty_answer"}
    if derived_empty is not None and not derived_empty.empty:
        extra = derived_empty[~derived_empty["judge"].isin(have_empty)]
        if not extra.empty:
            rows += _summarise(extra, level, f"judgments of answers of ≤ {EMPTY_MAX_WORDS} words")
    done = {(r["judge"], r["check"]) for r in rows}
    llm_judges = sorted({*[j for j in judges if not j.startswith(HUMAN_PREFIX)], *(r["judge"] for r in rows)})
    for judge in llm_judges:
        for check in CHECKS:
            if (judge, check) in done:
                continue
            if check == "position_bias":
                why = "no pairwise judging in the judge folder" if pairwise is None else \
                    "no pairwise verdicts for this judge"
            elif check == "empty_answer" and reliability is None:
                why = "no reliability table and no empty answer among the judged ones"
            else:
                why = "no reliability table" if reliability is None else "not in the reliability table"
            rows.append({"judge": judge, "prompt_version": None, "check": check, "status": "not run",
                         "flagged": False, "n": 0, "n_failed": 0, "metrics_flagged": 0, "n_metrics": 0,
                         "source": None, "detail": why})
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    if df.empty:
        return df[COLUMNS]
    order = {c: i for i, c in enumerate(CHECKS)}
    df = df.assign(_o=df["check"].map(order).fillna(99)).sort_values(["judge", "_o", "prompt_version"],
                                                                      na_position="last")
    return df.drop(columns="_o")[COLUMNS].reset_index(drop=True)


def pairwise_wins_table(pairwise: pd.DataFrame | None, level: float = 0.95) -> pd.DataFrame:
    """Win rate of model_a over model_b per judge, over questions judged in both orders."""
    if pairwise is None or pairwise.empty:
        return pd.DataFrame(columns=PAIRWISE_COLUMNS)
    ok = pairwise[pairwise["winner"].notna() & pairwise["error"].isna()]
    keys = ["judge", "prompt_version", "model_a", "model_b"]
    rows = []
    for key, d in ok.groupby(keys, sort=True):
        judge, version, a, b = key
        both = d.pivot_table(index="question_id", columns="order", values="winner", aggfunc="first")
        if not {"ab", "ba"} <= set(both.columns):
            continue
        both = both.dropna()
        counts = {"a": 0, "b": 0, "tie": 0, "inconsistent": 0}
        for x, y in zip(both["ab"], both["ba"], strict=True):
            if x == y and x in (a, b):
                counts["a" if x == a else "b"] += 1
            elif {x, y} == {a, b}:
                counts["inconsistent"] += 1
            else:
                counts["tie"] += 1
        n = len(both)
        ties = counts["tie"] + counts["inconsistent"]
        rate = (counts["a"] + 0.5 * ties) / n if n else np.nan
        lo, hi = wilson(counts["a"] + 0.5 * ties, n, level)
        rows.append({"judge": judge, "prompt_version": version, "model_a": a, "model_b": b,
                     "base_model": d["base_model"].iloc[0], "data_config": d["data_config"].iloc[0], "n": n,
                     "wins_a": counts["a"], "wins_b": counts["b"], "ties": counts["tie"],
                     "inconsistent": counts["inconsistent"], "win_rate_a": rate,
                     "ci_low": float(lo), "ci_high": float(hi)})
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)
