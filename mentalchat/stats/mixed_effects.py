"""Gains as a mixed-effects model: one fit per (judge, score name) over every base model at once.

The paired tests in :mod:`mentalchat.stats.gains` compare one fine-tuned model with its base
at a time. Here each data configuration's effect is estimated jointly,

    score ~ C(data_config, Treatment("base")) + C(base_model) + (1 | question_id),

with statsmodels' ``MixedLM`` (REML): the random intercept absorbs how hard each question is,
the base-model terms how good each base model is, and a configuration's coefficient is its
average gain over the untuned models with a Wald CI and p-value. Baselines (no base model) are
left out. A fit that fails, does not converge or lands on the boundary (no question variance:
a singular fit) still gives a row, with what went wrong in ``note``; statsmodels' warnings go
there instead of the log.

MixedLM loops over the groups in Python at every likelihood evaluation, which at thousands of
questions takes minutes per fit. Above ``statsmodels_max_obs`` observations the same REML fit
is computed in closed form (:func:`reml_random_intercept`): with one random intercept per
question, the likelihood depends on the data only through per-question means and the overall
cross products, so each evaluation costs O(questions); the tests check it against MixedLM.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mentalchat.core.rubric import ALL_SCORE_NAMES
from mentalchat.schemas import MIXED_EFFECTS
from mentalchat.stats.data import ScoreCube

__all__ = ["COLUMNS", "STATSMODELS_MAX_OBS", "TERM", "mixed_effects_table", "reml_random_intercept"]

#: above this many observations per fit, the closed-form REML fit replaces MixedLM
STATSMODELS_MAX_OBS = 20_000

OPTIMIZERS = ("bfgs", "lbfgs", "powell")
TERM = 'C(data_config, Treatment("base"))[T.{}]'
COLUMNS = MIXED_EFFECTS.columns  # the table's schema is the one list of its columns


def _long(cube: ScoreCube, j: int, k: int, configs: list[str]) -> pd.DataFrame:
    """Scored (question, model) rows of one judge and score name, models with a base model and a
    configuration among ``base`` + ``configs``; text columns are categoricals (sorted levels, as
    patsy orders them), so that large tables cost no per-row Python."""
    wanted = {"base", *configs}
    models = [m for m in range(len(cube.models))
              if cube.model_base[m] is not None and cube.model_config[m] in wanted]
    if not models:
        return pd.DataFrame(columns=["question_id", "model", "base_model", "data_config", "score", "q"])
    vals = cube.values[:, models, j, k]  # (Q, M')
    qi, mi = np.nonzero(~np.isnan(vals))

    def cat(labels: list[str]) -> pd.Categorical:
        levels = sorted(set(labels))
        index = {v: i for i, v in enumerate(levels)}
        return pd.Categorical.from_codes(np.asarray([index[v] for v in labels])[mi], levels)

    return pd.DataFrame({
        "question_id": pd.Categorical.from_codes(qi, cube.questions),
        "model": cat([cube.models[m] for m in models]),
        "base_model": cat([cube.model_base[m] for m in models]),
        "data_config": cat([cube.model_config[m] for m in models]),
        "score": vals[qi, mi],
        "q": qi,
    })


def _fit(df: pd.DataFrame, level: float) -> tuple[pd.DataFrame | None, dict, list[str]]:
    """Fit one model; returns (per-term estimates or None, fit facts, notes)."""
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    notes: list[str] = []
    facts: dict = {"converged": False, "group_var": np.nan, "resid_var": np.nan}
    formula = 'score ~ C(data_config, Treatment("base"))'
    if df["base_model"].nunique() > 1:
        formula += " + C(base_model)"
    df = df.assign(data_config=df["data_config"].astype(str), base_model=df["base_model"].astype(str))
    # L-BFGS can stop at a false boundary optimum (measured on the authors' judgments: question
    # variance 0, intercept 0) while BFGS finds the interior one, so BFGS goes first and the
    # others are tried only when it fails or does not converge; the best converged fit wins.
    tried: list[tuple[float, bool, object, list]] = []
    for method in OPTIMIZERS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = smf.mixedlm(formula, df, groups=df["q"].to_numpy()).fit(reml=True, method=[method])
            except (ValueError, np.linalg.LinAlgError, ZeroDivisionError, IndexError) as exc:
                notes.append(f"{method} failed: {type(exc).__name__}: {exc}")
                continue
            llf = float(res.llf) if np.isfinite(res.llf) else -np.inf  # computed lazily: may warn
        tried.append((llf, bool(res.converged), res, list(caught)))
        if res.converged:
            break
    if not tried:
        return None, facts, notes
    tried.sort(key=lambda t: (t[1], t[0]), reverse=True)
    _, _, res, caught = tried[0]
    for w in caught:
        msg = " ".join(str(w.message).split())
        kind = "convergence" if issubclass(w.category, ConvergenceWarning) else w.category.__name__
        text = f"{kind}: {msg}"
        if text not in notes:
            notes.append(text)
    facts["converged"] = bool(getattr(res, "converged", False))
    cov_re = np.asarray(res.cov_re, dtype=float)
    facts["group_var"] = float(cov_re.ravel()[0]) if cov_re.size else np.nan
    facts["resid_var"] = float(res.scale)
    if not facts["converged"]:
        notes.append("did not converge")
    if np.isfinite(facts["group_var"]) and facts["group_var"] <= 1e-8 * max(facts["resid_var"], 1e-12):
        notes.append("singular fit: the question variance is estimated at 0 (a plain regression)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = res.conf_int(alpha=1.0 - level)
        out = pd.DataFrame({"estimate": res.fe_params, "se": res.bse_fe, "p_value": res.pvalues,
                            "ci_lo": ci[0], "ci_hi": ci[1]}).reindex(res.fe_params.index)
    return out, facts, notes


def _design(df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The fixed-effects design MixedLM's formula builds: intercept, configurations against
    ``base``, base models against the first (sorted) one; column names as patsy spells them."""
    cols, names = [np.ones(len(df))], ["Intercept"]
    for cfg in sorted(set(df["data_config"].unique()) - {"base"}):
        cols.append((df["data_config"] == cfg).to_numpy(dtype=float))
        names.append(TERM.format(cfg))
    bases = sorted(df["base_model"].unique())
    for b in bases[1:]:
        cols.append((df["base_model"] == b).to_numpy(dtype=float))
        names.append(f"C(base_model)[T.{b}]")
    return np.column_stack(cols), names


def reml_random_intercept(
    y: np.ndarray, X: np.ndarray, groups: np.ndarray, level: float = 0.95
) -> dict:
    """REML fit of y = X b + u_group + e with one normal random intercept per group.

    With lam = var(u) / var(e), GLS is OLS on quasi-demeaned data (y - t_g mean_g(y), t_g = 1 -
    (1 + n_g lam)^-1/2), so X'V^-1 X and the rest follow from per-group means; the profiled REML
    log-likelihood is maximised over log lam (bounded, and lam = 0 checked). Returns estimates,
    standard errors, Wald CIs and p-values, both variances and whether lam hit 0.
    """
    from scipy.optimize import minimize_scalar
    from scipy.stats import norm

    codes = np.unique(groups, return_inverse=True)[1]
    n_g = np.bincount(codes).astype(float)
    N, p = X.shape
    xbar = np.zeros((len(n_g), p))
    np.add.at(xbar, codes, X)
    xbar /= n_g[:, None]
    ybar = np.bincount(codes, weights=y) / n_g
    XtX, Xty, yty = X.T @ X, X.T @ y, float(y @ y)

    def parts(lam: float) -> tuple[float, np.ndarray, np.ndarray, float]:
        t = 1.0 - 1.0 / np.sqrt(1.0 + n_g * lam)
        w = n_g * (2 * t - t * t)
        A = XtX - (xbar * w[:, None]).T @ xbar
        c = Xty - (xbar * w[:, None]).T @ ybar
        beta = np.linalg.solve(A, c)
        rss = yty - float((w * ybar * ybar).sum()) - 2 * float(beta @ c) + float(beta @ A @ beta)
        rss = max(rss, 1e-300)
        sign, logdet = np.linalg.slogdet(A)
        ll = -0.5 * ((N - p) * np.log(rss / (N - p)) + np.log1p(n_g * lam).sum() + logdet)
        return ll, beta, A, rss

    opt = minimize_scalar(lambda z: -parts(float(np.exp(z)))[0], bounds=(-25.0, 12.0), method="bounded",
                          options={"xatol": 1e-8})
    lam = float(np.exp(opt.x))
    if parts(0.0)[0] >= parts(lam)[0]:
        lam = 0.0
    ll, beta, A, rss = parts(lam)
    sigma2 = rss / (N - p)
    se = np.sqrt(np.diag(np.linalg.inv(A)) * sigma2)
    z = norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        pval = 2 * norm.sf(np.abs(beta / se))
    return {"estimate": beta, "se": se, "ci_lo": beta - z * se, "ci_hi": beta + z * se, "p_value": pval,
            "group_var": lam * sigma2, "resid_var": sigma2, "llf": ll, "boundary": lam <= 1e-8,
            "converged": bool(opt.success) if hasattr(opt, "success") else True}


def _fit_closed_form(df: pd.DataFrame, level: float) -> tuple[pd.DataFrame | None, dict, list[str]]:
    X, names = _design(df)
    notes = [f"closed-form REML fit ({len(df):,} observations, above the MixedLM limit)"]
    try:
        res = reml_random_intercept(df["score"].to_numpy(dtype=float), X, df["q"].to_numpy(), level)
    except np.linalg.LinAlgError as exc:
        return None, {"converged": False}, [*notes, f"fit failed: LinAlgError: {exc}"]
    if res["boundary"]:
        notes.append("singular fit: the question variance is estimated at 0 (a plain regression)")
    out = pd.DataFrame({k: res[k] for k in ("estimate", "se", "ci_lo", "ci_hi", "p_value")}, index=names)
    return out, {"converged": res["converged"], "group_var": res["group_var"], "resid_var": res["resid_var"]}, notes


def mixed_effects_table(
    cube: ScoreCube, configs: list[str], *, metrics: list[str] | None = None, level: float = 0.95,
    statsmodels_max_obs: int = STATSMODELS_MAX_OBS,
) -> pd.DataFrame:
    """One row per (judge, score name, fine-tuned configuration): the configuration's effect
    over the untuned models, from one mixed model per (judge, score name)."""
    rows: list[dict] = []
    names = metrics if metrics is not None else list(ALL_SCORE_NAMES)
    for j, judge in enumerate(cube.judges):
        for metric in names:
            k = ALL_SCORE_NAMES.index(metric)
            df = _long(cube, j, k, configs)
            seen = set(df["data_config"].unique())
            present = [c for c in configs if c in seen]
            if df.empty or "base" not in seen or not present:
                continue  # nothing to compare (no untuned or no fine-tuned model scored)
            common = {"judge": judge, "metric": metric, "n_obs": len(df),
                      "n_questions": int(df["question_id"].nunique()),
                      "n_models": int(df["model"].nunique())}
            if common["n_questions"] < 3:
                est, facts, notes = None, {"converged": False}, ["fewer than 3 questions: not fitted"]
            elif len(df) > statsmodels_max_obs:
                est, facts, notes = _fit_closed_form(df, level)
            else:
                est, facts, notes = _fit(df, level)
            for cfg in present:
                term = TERM.format(cfg)
                row = {**common, "term": term, "data_config": cfg,
                       "converged": bool(facts.get("converged", False)),
                       "group_var": facts.get("group_var", np.nan),
                       "resid_var": facts.get("resid_var", np.nan),
                       "note": "; ".join(notes) or None}
                if est is not None and term in est.index:
                    row.update({c: float(est.loc[term, c]) for c in
                                ("estimate", "se", "ci_lo", "ci_hi", "p_value")})
                rows.append(row)
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    return df[COLUMNS]
