"""Agreement between evaluators (LLM judges and human raters) on the items both scored.

An item is one (question, model) answer. For every pair of evaluators and every score name:
Cohen's kappa (unweighted, linear, quadratic; scikit-learn) with bootstrap CIs over questions,
Krippendorff's alpha (ordinal; ``krippendorff``), Spearman's rho (SciPy), ICC (pingouin),
exact agreement and the mean difference. ``mean_of_7`` is continuous: it gets no kappa and no
alpha. Across all evaluators: Fleiss' kappa (statsmodels, items scored by everyone) and
Krippendorff's alpha (items scored at least twice).

Every statistic of a pair has a CI, so that judge–human agreement (``human:<rater>``
evaluators, ``pair_kind``) comes with its uncertainty. The CIs resample questions like every
other CI of the run, each from per-question sums and one matrix product: a resample's kappa
from its confusion matrix, Krippendorff's alpha from its coincidence matrix (for a pair, the
confusion matrix plus its transpose), exact agreement, mean differences, ICC(C,1) and
Spearman's rho from moment sums. Spearman's rho is resampled on the ranks of the full sample
(not re-ranked per resample), which keeps it one product; the point estimates are the
libraries'. The ICC(A,1) CI is pingouin's F-based one (McGraw & Wong). Above
``LIBRARY_MAX_ITEMS`` shared items, alpha and the ICC use closed forms that the tests check
against ``krippendorff`` and pingouin, because those materialise per-item arrays.
"""

from __future__ import annotations

import itertools
import warnings

import krippendorff
import numpy as np
import pandas as pd
import pingouin
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa

from mentalchat.core.rubric import ALL_SCORE_NAMES, MEAN_OF_7, SCORE_MAX, SCORE_MIN
from mentalchat.schemas import AGREEMENT
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.data import ScoreCube

__all__ = ["agreement_table", "alpha_ordinal_from_coincidence", "kappa_from_confusion", "pair_kind"]

N_CAT = SCORE_MAX - SCORE_MIN + 1
CODES = np.arange(N_CAT)  # category codes: score - SCORE_MIN
WEIGHTINGS = {"kappa": None, "kappa_linear": "linear", "kappa_quadratic": "quadratic"}
#: above this many items, alpha and ICC use the equivalent closed forms (see agreement_table)
LIBRARY_MAX_ITEMS = 50_000

#: statistics with a bootstrap CI (``<name>_ci_low`` / ``<name>_ci_high``) besides the kappas
BOOT_STATS = ("alpha_ordinal", "spearman", "icc_consistency", "fleiss_kappa", "exact_agreement",
              "mean_diff", "mean_abs_diff")
COLUMNS = AGREEMENT.columns  # the table's schema is the one list of its columns
HUMAN_PREFIX = "human:"


def _weights(kind: str | None) -> np.ndarray:
    i, j = np.meshgrid(np.arange(N_CAT), np.arange(N_CAT), indexing="ij")
    if kind is None:
        return (i != j).astype(np.float64)
    if kind == "linear":
        return np.abs(i - j).astype(np.float64)
    return ((i - j) ** 2).astype(np.float64)


def kappa_from_confusion(conf: np.ndarray, weights: str | None) -> np.ndarray:
    """Cohen's kappa of confusion matrices (..., C, C), as scikit-learn defines it."""
    w = _weights(weights)
    n = conf.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = conf.sum(-1)[..., :, None] * conf.sum(-2)[..., None, :] / n[..., None, None]
        return 1.0 - (w * conf).sum(axis=(-2, -1)) / (w * expected).sum(axis=(-2, -1))


def _categories(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), SCORE_MIN, SCORE_MAX).astype(np.int64)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except (ValueError, ZeroDivisionError, AssertionError, np.linalg.LinAlgError):
            return None


def _icc(x: np.ndarray, y: np.ndarray, library_max_items: int) -> tuple[float, float, float, float]:
    n = x.size
    if n < 5 or (np.ptp(x) == 0 and np.ptp(y) == 0):
        return (np.nan,) * 4
    if n > library_max_items:
        return _icc_anova(x, y)
    long = pd.DataFrame({
        "item": np.tile(np.arange(n), 2),
        "rater": np.repeat(np.array(["a", "b"]), n),
        "score": np.concatenate([x, y]),
    })
    res = _quiet(pingouin.intraclass_corr, data=long, targets="item", raters="rater",
                 ratings="score")
    if res is None:
        return (np.nan,) * 4
    res = res.set_index("Type")
    # pingouin ≥ 0.7 names them ICC(A,1)/ICC(C,1); older versions ICC2/ICC3
    a1 = "ICC(A,1)" if "ICC(A,1)" in res.index else "ICC2"
    c1 = "ICC(C,1)" if "ICC(C,1)" in res.index else "ICC3"
    lo, hi = res.loc[a1, "CI95"] if "CI95" in res.columns else res.loc[a1, "CI95%"]
    return float(res.loc[a1, "ICC"]), float(lo), float(hi), float(res.loc[c1, "ICC"])


def _alpha(value_counts: np.ndarray, level: str, library_max_items: int) -> float:
    usable = value_counts[value_counts.sum(1) >= 2]
    if usable.shape[0] < 2:
        return np.nan
    if usable.shape[0] > library_max_items:
        return _alpha_ordinal_grouped(usable)
    res = _quiet(krippendorff.alpha, value_counts=usable, level_of_measurement=level)
    return float(res) if res is not None else np.nan


def _alpha_ordinal_grouped(value_counts: np.ndarray) -> float:
    """Krippendorff's ordinal alpha for many items, equal to ``krippendorff.alpha``.

    The package materialises an (items × values × values) array, which at a few hundred
    thousand items costs seconds and gigabytes. Alpha depends on the items only through the
    coincidence matrix, a sum over items of a function of each item's value counts, so items
    with the same counts are grouped first (at most a few hundred distinct patterns).
    """
    base = int(value_counts.max()) + 1
    V = value_counts.shape[1]
    if base ** V < 2**62:  # one integer per pattern: much faster than np.unique(axis=0)
        keys = value_counts.astype(np.int64) @ (base ** np.arange(V, dtype=np.int64))
        _, first, counts = np.unique(keys, return_index=True, return_counts=True)
        patterns = value_counts[first]
    else:
        patterns, counts = np.unique(value_counts, axis=0, return_counts=True)
    m = patterns.sum(1).astype(np.float64)
    w = counts / (m - 1.0)
    o = np.einsum("u,uc,uk->ck", w, patterns, patterns) - np.diag(w @ patterns)
    return float(alpha_ordinal_from_coincidence(o))


def alpha_ordinal_from_coincidence(o: np.ndarray) -> np.ndarray:
    """Krippendorff's ordinal alpha of coincidence matrices (..., V, V), vectorised over the
    leading axes so that every bootstrap resample is one slice of one array."""
    o = np.asarray(o, dtype=np.float64)
    V = o.shape[-1]
    n_c = o.sum(-1)
    n = n_c.sum(-1)
    cum = np.concatenate([np.zeros((*n_c.shape[:-1], 1)), np.cumsum(n_c, axis=-1)], axis=-1)
    i, k = np.meshgrid(np.arange(V), np.arange(V), indexing="ij")
    lo, hi = np.minimum(i, k), np.maximum(i, k)
    delta = (cum[..., hi + 1] - cum[..., lo] - (n_c[..., i] + n_c[..., k]) / 2.0) ** 2
    diag = n_c[..., :, None] * np.eye(V)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = (n_c[..., :, None] * n_c[..., None, :] - diag) / (n - 1.0)[..., None, None]
        return 1.0 - (o * delta).sum(axis=(-2, -1)) / (expected * delta).sum(axis=(-2, -1))


# per-question moment sums of a pair's shared items: what the moment-based CIs are computed from
_MOMENTS = ("n", "x", "y", "xx", "yy", "xy", "absdiff", "equal", "rx", "ry", "rxrx", "ryry", "rxry")


def _moment_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    return np.column_stack([np.ones_like(x), x, y, x * x, y * y, x * y, np.abs(x - y),
                            (x == y).astype(np.float64), rx, ry, rx * rx, ry * ry, rx * ry])


def _moment_statistics(s: np.ndarray) -> dict[str, np.ndarray]:
    """Exact agreement, mean (absolute) difference, ICC(C,1) and rank correlation from moment
    sums (..., len(_MOMENTS)); ICC(C,1) by the two-way ANOVA formulas (k = 2 raters)."""
    c = {name: s[..., i] for i, name in enumerate(_MOMENTS)}
    n = c["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"exact_agreement": c["equal"] / n, "mean_diff": (c["x"] - c["y"]) / n,
               "mean_abs_diff": c["absdiff"] / n}
        g = (c["x"] + c["y"]) / (2 * n)
        ss_rows = 0.5 * (c["xx"] + c["yy"] + 2 * c["xy"]) - 2 * n * g**2
        ss_cols = n * ((c["x"] / n - g) ** 2 + (c["y"] / n - g) ** 2)
        ss_err = c["xx"] + c["yy"] - 2 * n * g**2 - ss_rows - ss_cols
        msb, mse = ss_rows / (n - 1), ss_err / (n - 1)
        out["icc_consistency"] = (msb - mse) / (msb + mse)
        cov = c["rxry"] / n - (c["rx"] / n) * (c["ry"] / n)
        vx = c["rxrx"] / n - (c["rx"] / n) ** 2
        vy = c["ryry"] / n - (c["ry"] / n) ** 2
        out["spearman"] = cov / np.sqrt(vx * vy)
    return out


def _fleiss_from_sums(s: np.ndarray, m: int) -> np.ndarray:
    """Fleiss' kappa from sums over items (..., 2 + V): items, sum of per-item agreement P_i,
    category counts; ``m`` raters per item."""
    n_items, p_sum, cats = s[..., 0], s[..., 1], s[..., 2:]
    with np.errstate(invalid="ignore", divide="ignore"):
        p_bar = p_sum / n_items
        p_j = cats / (n_items * m)[..., None]
        p_e = (p_j**2).sum(-1)
        return (p_bar - p_e) / (1.0 - p_e)


def _per_question(q: np.ndarray, values: np.ndarray, Q: int) -> np.ndarray:
    """Sum rows of ``values`` (items × G) per question code ``q`` → (Q × G)."""
    out = np.zeros((Q, values.shape[1]))
    if q.size:
        order = np.argsort(q, kind="stable")
        qs = q[order]
        uniq, start = np.unique(qs, return_index=True)
        out[uniq] = np.add.reduceat(values[order], start, axis=0)
    return out


def pair_kind(a: str, b: str) -> str:
    """judge-judge, judge-human or human-human: which pairs a reader compares with people."""
    humans = sum(name.startswith(HUMAN_PREFIX) for name in (a, b))
    return ("judge-judge", "judge-human", "human-human")[humans]


def _icc_anova(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """ICC(A,1) with its CI and ICC(C,1) for two complete raters, by pingouin's formulas
    (two-way ANOVA, McGraw & Wong CIs) in closed form: pingouin's pandas pivot and ANOVA take
    seconds per call at hundreds of thousands of items."""
    from scipy.stats import f as f_dist

    n, k = x.size, 2
    data = np.column_stack([x, y]).astype(np.float64)
    grand = data.mean()
    ss_rows = k * ((data.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((data.mean(0) - grand) ** 2).sum()
    ss_err = ((data - grand) ** 2).sum() - ss_rows - ss_cols
    msb, msj = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        icc2 = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
        icc3 = (msb - mse) / (msb + (k - 1) * mse)
        alpha = 1.0 - level
        fj = msj / mse
        df2 = (n - 1) * (k - 1)
        vn = df2 * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        vd = (n - 1) * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        v = vn / vd
        f2u = f_dist.ppf(1 - alpha / 2, n - 1, v)
        f2l = f_dist.ppf(1 - alpha / 2, v, n - 1)
        lo = n * (msb - f2u * mse) / (f2u * (k * msj + (k * n - k - n) * mse) + n * msb)
        hi = n * (f2l * msb - mse) / (k * msj + (k * n - k - n) * mse + n * f2l * msb)
    return float(icc2), float(lo), float(hi), float(icc3)


def agreement_table(
    cube: ScoreCube, boot: QuestionBootstrap, *, library_max_items: int = LIBRARY_MAX_ITEMS
) -> pd.DataFrame:
    """Pairwise and all-evaluator agreement with bootstrap CIs; see the module docstring.

    Up to ``library_max_items`` shared items, Krippendorff's alpha and the ICC come from
    ``krippendorff`` and pingouin; above, from closed forms that give the same numbers (tested)
    in time linear in the items.
    """
    Q, M, J = cube.shape
    rows: list[dict] = []
    if J < 2:
        return pd.DataFrame(columns=COLUMNS)
    q_of_item = np.repeat(np.arange(Q), M)  # items are (question, model), question-major
    for a, b in itertools.combinations(range(J), 2):
        pair_rows = []
        conf_cols: list[tuple[dict, np.ndarray]] = []
        moment_cols: list[tuple[dict, np.ndarray]] = []
        for k, metric in enumerate(ALL_SCORE_NAMES):
            x = cube.values[:, :, a, k].ravel()
            y = cube.values[:, :, b, k].ravel()
            both = ~np.isnan(x) & ~np.isnan(y)
            n = int(both.sum())
            row = {"scope": "pair", "evaluator_a": cube.judges[a], "evaluator_b": cube.judges[b],
                   "pair_kind": pair_kind(cube.judges[a], cube.judges[b]),
                   "n_evaluators": 2, "metric": metric, "n_items": n}
            pair_rows.append(row)
            if n == 0:
                continue
            xs, ys = x[both], y[both]
            row["exact_agreement"] = float(np.mean(xs == ys))
            row["mean_diff"] = float(np.mean(xs - ys))
            row["mean_abs_diff"] = float(np.mean(np.abs(xs - ys)))
            rho = _quiet(spearmanr, xs, ys)
            if rho is not None:
                row["spearman"], row["spearman_p"] = float(rho[0]), float(rho[1])
            row["icc"], row["icc_ci_low"], row["icc_ci_high"], row["icc_consistency"] = _icc(
                xs, ys, library_max_items)
            if boot.n_boot:
                moment_cols.append((row, _per_question(q_of_item[both], _moment_columns(xs, ys), Q)))
            if metric == MEAN_OF_7:  # continuous: ICC and Spearman only
                continue
            cx, cy = _categories(xs), _categories(ys)
            if J > 2:  # with two evaluators the 'all' row below computes the same alpha
                items = np.arange(n) * N_CAT
                vc = (np.bincount(items + cx - SCORE_MIN, minlength=n * N_CAT)
                      + np.bincount(items + cy - SCORE_MIN, minlength=n * N_CAT)).reshape(n, N_CAT)
                row["alpha_ordinal"] = _alpha(vc, "ordinal", library_max_items)
            # scikit-learn on the distinct (a, b) pairs weighted by their counts: the same
            # kappa as on every item, without a pass over the items per weighting
            conf = np.bincount((cx - SCORE_MIN) * N_CAT + (cy - SCORE_MIN),
                               minlength=N_CAT * N_CAT)
            cells = np.flatnonzero(conf)
            for col, wt in WEIGHTINGS.items():
                kap = _quiet(cohen_kappa_score, cells // N_CAT, cells % N_CAT, labels=CODES,
                             weights=wt, sample_weight=conf[cells])
                row[col] = float(kap) if kap is not None else np.nan
            if boot.n_boot:
                cell = (cx - SCORE_MIN) * N_CAT + (cy - SCORE_MIN)
                per_q = np.bincount(q_of_item[both] * N_CAT * N_CAT + cell,
                                    minlength=Q * N_CAT * N_CAT).reshape(Q, N_CAT * N_CAT)
                conf_cols.append((row, per_q))
        if conf_cols:
            stacked = np.concatenate([c for _, c in conf_cols], axis=1)
            resampled = boot.apply(stacked).reshape(boot.n_boot, len(conf_cols), N_CAT, N_CAT)
            for col, wt in WEIGHTINGS.items():
                lo, hi = boot.interval(kappa_from_confusion(resampled, wt))
                for i, (row, _) in enumerate(conf_cols):
                    row[f"{col}_ci_low"], row[f"{col}_ci_high"] = float(lo[i]), float(hi[i])
            # a pair's coincidence matrix is its confusion matrix plus the transpose
            lo, hi = boot.interval(alpha_ordinal_from_coincidence(
                resampled + np.swapaxes(resampled, -1, -2)))
            for i, (row, _) in enumerate(conf_cols):
                row["alpha_ordinal_ci_low"], row["alpha_ordinal_ci_high"] = float(lo[i]), float(hi[i])
        if moment_cols:
            stacked = np.concatenate([c for _, c in moment_cols], axis=1)
            resampled = boot.apply(stacked).reshape(boot.n_boot, len(moment_cols), len(_MOMENTS))
            for name, values in _moment_statistics(resampled).items():
                lo, hi = boot.interval(values)
                for i, (row, _) in enumerate(moment_cols):
                    row[f"{name}_ci_low"], row[f"{name}_ci_high"] = float(lo[i]), float(hi[i])
        rows.extend(pair_rows)

    # all evaluators together
    for k, metric in enumerate(ALL_SCORE_NAMES):
        r = cube.values[:, :, :, k].reshape(Q * M, J)
        scored = ~np.isnan(r)
        multi = scored.sum(1) >= 2
        row = {"scope": "all", "evaluator_a": None, "evaluator_b": None, "pair_kind": None,
               "n_evaluators": J, "metric": metric, "n_items": int(multi.sum())}
        if metric != MEAN_OF_7:
            cats = np.where(scored, np.clip(np.rint(np.nan_to_num(r)), SCORE_MIN, SCORE_MAX),
                            SCORE_MIN).astype(np.int64)
            cell = np.arange(Q * M)[:, None] * N_CAT + cats - SCORE_MIN
            vc = np.bincount(cell[scored], minlength=Q * M * N_CAT).reshape(Q * M, N_CAT)
            row["alpha_ordinal"] = _alpha(vc[multi], "ordinal", library_max_items)
            if boot.n_boot and multi.sum() >= 2:
                o_q = _coincidence_per_question(vc[multi], q_of_item[multi], Q)
                boot_o = boot.apply(o_q).reshape(boot.n_boot, N_CAT, N_CAT)
                lo, hi = boot.interval(alpha_ordinal_from_coincidence(boot_o)[:, None])
                row["alpha_ordinal_ci_low"], row["alpha_ordinal_ci_high"] = float(lo[0]), float(hi[0])
            complete = scored.all(1)
            if complete.sum() >= 2:
                # an (items × categories) count table is what aggregate_raters would build
                fk = _quiet(fleiss_kappa, vc[complete], method="fleiss")
                row["fleiss_kappa"] = float(fk) if fk is not None else np.nan
                if boot.n_boot:
                    vcc = vc[complete].astype(np.float64)
                    p_i = ((vcc**2).sum(1) - J) / (J * (J - 1))
                    sums = _per_question(q_of_item[complete],
                                         np.column_stack([np.ones(len(vcc)), p_i, vcc]), Q)
                    lo, hi = boot.interval(_fleiss_from_sums(boot.apply(sums), J)[:, None])
                    row["fleiss_kappa_ci_low"], row["fleiss_kappa_ci_high"] = float(lo[0]), float(hi[0])
        rows.append(row)
        if J == 2:
            pair_row = next(r for r in rows if r["scope"] == "pair" and r["metric"] == metric)
            pair_row["alpha_ordinal"] = row.get("alpha_ordinal", np.nan)
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    return df[COLUMNS]


def _coincidence_per_question(value_counts: np.ndarray, q: np.ndarray, Q: int,
                              block: int = 20_000) -> np.ndarray:
    """Per-question sums of each item's coincidences (Q × V²), in blocks of items so that the
    (items × V × V) outer products stay small."""
    V = value_counts.shape[1]
    out = np.zeros((Q, V * V))
    for s in range(0, len(value_counts), block):
        vc = value_counts[s:s + block].astype(np.float64)
        w = 1.0 / (vc.sum(1) - 1.0)
        contrib = w[:, None, None] * (vc[:, :, None] * vc[:, None, :] - vc[:, :, None] * np.eye(V))
        out += _per_question(q[s:s + block], contrib.reshape(len(vc), V * V), Q)
    return out
