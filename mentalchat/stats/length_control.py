"""Length-controlled scores: how much of a model's mean is its answers' length.

LLM judges tend to reward longer answers, so a model can gain by writing more rather than
better. In the spirit of AlpacaEval's length-controlled win rate (Dubois et al., 2024), but for
single grades: per judge and score name, regress the score on the model (one intercept each)
and the answer's length in words, standardised,

    score = a_model + b * (words - mean words) / sd words + error,

and report the slope ``b`` per 100 words, and each model's length-controlled mean ``a_model``
(its predicted score at the mean length of all answers) beside its raw mean. The slope is the
within-model one: longer answers of the same model against its shorter ones.

The fit has a closed form in per-question sums (counts, length and score sums per model, and
two cross products), so the CIs come from the run's shared question resamples at the cost of a
matrix product, like every other table; the slope also gets a cluster-robust (by question)
standard error and p-value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import t as t_dist

from mentalchat.core.rubric import ALL_SCORE_NAMES, MEAN_OF_7, OVERALL
from mentalchat.schemas import ANSWERS, LENGTH_CONTROL
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.data import ScoreCube, select_turn
from mentalchat.stats.dataset_profile import word_counts

__all__ = ["COLUMNS", "DEFAULT_METRICS", "answer_lengths", "length_control_table"]

DEFAULT_METRICS = (MEAN_OF_7, OVERALL)
COLUMNS = LENGTH_CONTROL.columns  # the table's schema is the one list of its columns


def answer_lengths(cube: ScoreCube, answers: Sequence[pa.Table]) -> tuple[np.ndarray, list[str]]:
    """Words of each (question, model) answer of the cube, (Q × M) with NaN where unknown.

    ``answers`` are ``answers`` tables (ours, or FastChat's read by
    :func:`mentalchat.core.fastchat.read_model_answers`), joined by question id and model name.
    Returns the array and notes (repeated answers, judged models without any answer).
    """
    Q, M, _ = cube.shape
    words = np.full((Q, M), np.nan)
    notes: list[str] = []
    if not answers:
        return words, notes
    # single-turn answers only, as the cube holds single-turn judgments only (a multi-turn
    # question has one answer per turn; its lengths are not part of this analysis)
    frames = [select_turn(ANSWERS.validate(t, source="<answers>"), None)
              .select(["question_id", "model_id", "answer"]).to_pandas() for t in answers if t.num_rows]
    if not frames:
        return words, notes
    df = pd.concat(frames, ignore_index=True)
    dup = df.duplicated(["question_id", "model_id"], keep="first")
    if dup.any():
        notes.append(f"answers: {int(dup.sum())} repeated (question, model) answers; the first is used")
        df = df[~dup]
    q_index = {q: i for i, q in enumerate(cube.questions)}
    m_index = {m: i for i, m in enumerate(cube.models)}
    qi = df["question_id"].astype(str).map(q_index)
    mi = df["model_id"].map(m_index)
    ok = qi.notna() & mi.notna()
    words[qi[ok].astype(int).to_numpy(), mi[ok].astype(int).to_numpy()] = word_counts(df.loc[ok, "answer"])
    judged = cube.present.any(axis=2)  # (Q, M)
    missing = [cube.models[m] for m in range(M) if judged[:, m].any() and np.isnan(words[:, m]).all()]
    if missing:
        notes.append("length control: no answers for " + ", ".join(f"`{m}`" for m in missing)
                     + " (left out of the length-control table)")
    return words, notes


def _fit(sums: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form least squares from sums (..., 3M + 2) laid out as [n_m, z_m, y_m, zz, zy]:
    returns (slope on z (...,), intercepts (..., M))."""
    n, z, y = sums[..., :M], sums[..., M:2 * M], sums[..., 2 * M:3 * M]
    zz, zy = sums[..., 3 * M], sums[..., 3 * M + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        zbar = np.where(n > 0, z / n, 0.0)
        sxx = zz - (zbar * z).sum(-1)
        sxy = zy - (zbar * y).sum(-1)
        b = sxy / sxx
        a = (y - b[..., None] * z) / n
    return b, a


def length_control_table(
    cube: ScoreCube,
    words: np.ndarray,
    boot: QuestionBootstrap,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> pd.DataFrame:
    """One row per (judge, score name, model) with a scored, measured answer; the judge-level
    slope is repeated on each of its rows."""
    Q, M, J = cube.shape
    rows: list[dict] = []
    for j, judge in enumerate(cube.judges):
        for metric in metrics:
            k = ALL_SCORE_NAMES.index(metric)
            y = cube.values[:, :, j, k]
            use = ~np.isnan(y) & ~np.isnan(words)
            models = np.flatnonzero(use.any(axis=0))
            if use.sum() < 3 or not models.size:
                continue
            w_all = words[use]
            ref, sd = float(w_all.mean()), float(w_all.std(ddof=1)) if w_all.size > 1 else 0.0
            if not sd > 0:
                continue  # every answer equally long: no slope to estimate
            u = use[:, models]
            z = np.where(u, (words[:, models] - ref) / sd, 0.0)
            yy = np.where(u, y[:, models], 0.0)
            Mm = len(models)
            per_q = np.concatenate([u.astype(np.float64), z, yy, (z * z).sum(1, keepdims=True),
                                    (z * yy).sum(1, keepdims=True)], axis=1)  # (Q, 3M' + 2)
            b, a = _fit(per_q.sum(0), Mm)
            # cluster-robust (by question) variance of the within-model slope
            counts = u.sum(0)
            zbar = z.sum(0) / counts
            zt = np.where(u, z - zbar, 0.0)
            resid = np.where(u, yy - a - b * z, 0.0)
            score_q = (zt * resid).sum(1)
            sxx = (zt**2).sum()
            G = int(u.any(1).sum())
            N, K = int(u.sum()), Mm + 1  # small-sample factor as Stata's and statsmodels'
            factor = G / max(G - 1, 1) * (N - 1) / max(N - K, 1)
            se = np.sqrt(factor * (score_q**2).sum()) / sxx if sxx > 0 else np.nan
            p = float(2 * t_dist.sf(abs(b / se), G - 1)) if np.isfinite(se) and se > 0 and G > 1 else np.nan
            if boot.n_boot:
                bb, ab = _fit(boot.apply(per_q), Mm)
                s_lo, s_hi = boot.interval(bb[:, None] * 100.0 / sd)
                a_lo, a_hi = boot.interval(ab)
            else:
                s_lo = s_hi = np.full(1, np.nan)
                a_lo = a_hi = np.full(Mm, np.nan)
            raw = yy.sum(0) / counts
            mean_words = np.where(u, words[:, models], 0.0).sum(0) / counts
            for i, m in enumerate(models):
                rows.append({
                    "judge": judge, "metric": metric, "model": cube.models[m],
                    "base_model": cube.model_base[m], "data_config": cube.model_config[m],
                    "n": int(counts[i]), "mean_words": float(mean_words[i]), "raw_mean": float(raw[i]),
                    "lc_mean": float(a[i]), "lc_ci_low": float(a_lo[i]), "lc_ci_high": float(a_hi[i]),
                    "slope_per_100_words": float(b * 100.0 / sd), "slope_ci_low": float(s_lo[0]),
                    "slope_ci_high": float(s_hi[0]), "slope_se": float(se * 100.0 / sd),
                    "slope_p_value": p, "ref_words": ref, "sd_words": sd, "n_obs": int(u.sum()),
                    "n_questions": G,
                })
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    return df[COLUMNS]
