"""Inter-evaluator agreement against the reference libraries."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pingouin
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from mentalchat.core.rubric import ALL_SCORE_NAMES, MEAN_OF_7, METRICS, OVERALL
from mentalchat.stats.agreement import agreement_table, kappa_from_confusion
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.data import build_cube
from mentalchat.testing.judgments import synthetic_judgments

from .conftest import judgments


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_from_confusion_equals_sklearn(weights) -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 10, 500)
    b = np.clip(a + rng.integers(-2, 3, 500), 0, 9)
    conf = np.zeros((10, 10))
    np.add.at(conf, (a, b), 1)
    expected = cohen_kappa_score(a, b, labels=np.arange(10), weights=weights)
    assert kappa_from_confusion(conf, weights) == pytest.approx(expected)
    stacked = kappa_from_confusion(np.stack([conf, conf.T]), weights)
    assert stacked.shape == (2,) and stacked[1] == pytest.approx(expected)


@pytest.fixture(scope="module")
def three_judges():
    table = synthetic_judgments(120, bases=("b1", "b2"), judges=("j1", "j2", "j3"),
                                judge_bias=[0.0, 0.5, -0.4], judge_noise=0.9, missing_rate=0.03, seed=8)
    cube = build_cube([table])
    return table, cube, agreement_table(cube, QuestionBootstrap(len(cube.questions), 300, seed=2))


def _pair(df, a: str, b: str, metric: str):
    x = df[(df["judge"] == a) & (df["metric"] == metric)].set_index(["question_id", "model"])["score"]
    y = df[(df["judge"] == b) & (df["metric"] == metric)].set_index(["question_id", "model"])["score"]
    both = x.to_frame("x").join(y.to_frame("y")).dropna()
    return both["x"].to_numpy(), both["y"].to_numpy()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_pairwise_statistics_match_the_libraries(three_judges) -> None:
    table, _, agr = three_judges
    df = table.to_pandas()
    pairs = agr[agr["scope"] == "pair"]
    assert len(pairs) == 3 * len(ALL_SCORE_NAMES)
    row = pairs[(pairs["evaluator_a"] == "j1") & (pairs["evaluator_b"] == "j3")
                & (pairs["metric"] == METRICS[1])].iloc[0]
    x, y = _pair(df, "j1", "j3", METRICS[1])
    assert row["n_items"] == len(x)
    for col, wt in (("kappa", None), ("kappa_linear", "linear"), ("kappa_quadratic", "quadratic")):
        assert row[col] == pytest.approx(cohen_kappa_score(x, y, weights=wt, labels=np.arange(1, 11)))
        assert row[f"{col}_ci_low"] <= row[col] <= row[f"{col}_ci_high"]
    assert row["spearman"] == pytest.approx(spearmanr(x, y)[0])
    assert row["alpha_ordinal"] == pytest.approx(
        krippendorff.alpha(reliability_data=np.vstack([x, y]), level_of_measurement="ordinal"))
    long = {"item": np.tile(np.arange(len(x)), 2), "rater": ["a"] * len(x) + ["b"] * len(x),
            "score": np.concatenate([x, y])}

    icc = pingouin.intraclass_corr(pd.DataFrame(long), targets="item", raters="rater", ratings="score")
    icc = icc.set_index("Type")
    assert row["icc"] == pytest.approx(float(icc.loc["ICC(A,1)" if "ICC(A,1)" in icc.index else "ICC2", "ICC"]))
    assert row["mean_diff"] == pytest.approx(np.mean(x - y)) and row["mean_diff"] > 0  # j3 scores lower
    assert row["exact_agreement"] == pytest.approx(np.mean(x == y))
    m7 = pairs[pairs["metric"] == MEAN_OF_7]
    assert m7["kappa"].isna().all() and m7["alpha_ordinal"].isna().all() and m7["icc"].notna().all()


def test_all_evaluator_statistics(three_judges) -> None:
    table, cube, agr = three_judges
    row = agr[(agr["scope"] == "all") & (agr["metric"] == OVERALL)].iloc[0]
    assert row["n_evaluators"] == 3 and pd.isna(row["evaluator_a"])
    r = cube.values[:, :, :, ALL_SCORE_NAMES.index(OVERALL)].reshape(-1, 3)
    complete = ~np.isnan(r).any(axis=1)
    table_fk, _ = aggregate_raters(r[complete].astype(int))
    assert row["fleiss_kappa"] == pytest.approx(fleiss_kappa(table_fk, method="fleiss"))
    keep = (~np.isnan(r)).sum(1) >= 2
    assert row["alpha_ordinal"] == pytest.approx(
        krippendorff.alpha(reliability_data=r[keep].T, level_of_measurement="ordinal"))
    assert row["n_items"] == keep.sum()


def test_perfect_agreement_and_too_few_items() -> None:
    rng = np.random.default_rng(0)
    items = []
    for q in range(30):
        scores = list(rng.integers(1, 11, 7))
        for judge in ("a", "b"):
            items.append((q, "m", "b", "base", judge, scores, float(scores[0])))
    agr = agreement_table(build_cube([judgments(items)]), QuestionBootstrap(30, 100))
    pair = agr[(agr["scope"] == "pair") & agr["metric"].isin(METRICS)]
    for col in ("kappa", "kappa_linear", "kappa_quadratic", "spearman", "alpha_ordinal", "exact_agreement",
                "kappa_ci_low"):
        assert np.allclose(pair[col], 1.0), col
    one = judgments([(1, "m", "b", "base", "a", [5] * 7, 5), (1, "m", "b", "base", "b", [6] * 7, 6)])
    tiny = agreement_table(build_cube([one]), QuestionBootstrap(1, 10))
    assert (tiny["n_items"] <= 1).all()  # defined rows, NaN statistics, no exception
    single = judgments([(1, "m", "b", "base", "a", [5] * 7, 5)])
    assert agreement_table(build_cube([single]), QuestionBootstrap(1, 10)).empty


def test_closed_forms_for_many_items_equal_the_libraries(three_judges) -> None:
    _, cube, with_libraries = three_judges
    closed = agreement_table(cube, QuestionBootstrap(len(cube.questions), 300, seed=2), library_max_items=0)
    for col in ("alpha_ordinal", "icc", "icc_consistency", "kappa_quadratic", "fleiss_kappa"):
        np.testing.assert_allclose(closed[col], with_libraries[col], rtol=1e-9, atol=1e-12, err_msg=col)
    for col in ("icc_ci_low", "icc_ci_high"):  # pingouin rounds its CIs to 2 decimals
        np.testing.assert_allclose(closed[col], with_libraries[col], atol=0.0051, err_msg=col)


# ---------------------------------------------------------------------------------------------
# Bootstrap CIs of every pair statistic (judge–human agreement included)
# ---------------------------------------------------------------------------------------------
from mentalchat.stats.agreement import (  # noqa: E402
    _MOMENTS,
    _moment_columns,
    _moment_statistics,
    alpha_ordinal_from_coincidence,
)

NOT_STATISTICS = {"n_evaluators", "n_items", "spearman_p"}


@pytest.fixture(scope="module")
def with_human():
    table = synthetic_judgments(80, bases=("b1", "b2"), judges=("judge-x", "judge-y", "human:ann"),
                                judge_bias=[0.0, 0.4, -0.2], judge_noise=0.8, missing_rate=0.02, seed=11)
    cube = build_cube([table])
    return cube, agreement_table(cube, QuestionBootstrap(len(cube.questions), 200, seed=5))


def test_every_statistic_of_a_judge_human_pair_has_a_ci(with_human) -> None:
    _, agr = with_human
    human = agr[agr["pair_kind"] == "judge-human"]
    assert set(zip(human["evaluator_a"], human["evaluator_b"], strict=True)) == {
        ("human:ann", "judge-x"), ("human:ann", "judge-y")}  # evaluators sorted by name
    assert set(agr.loc[agr["scope"] == "pair", "pair_kind"]) == {"judge-judge", "judge-human"}
    stats = [c for c in agr.columns if agr[c].dtype.kind == "f" and not c.endswith(("_ci_low", "_ci_high"))
             and c not in NOT_STATISTICS]
    assert {"kappa", "alpha_ordinal", "spearman", "icc", "icc_consistency", "exact_agreement",
            "mean_diff", "mean_abs_diff"} <= set(stats)
    for stat in stats:
        assert f"{stat}_ci_low" in agr.columns and f"{stat}_ci_high" in agr.columns, stat
        defined = human[human[stat].notna()]
        if stat == "fleiss_kappa":  # all-evaluator statistic
            assert defined.empty
            continue
        assert len(defined) >= 2 * len(METRICS), stat
        lo, hi = defined[f"{stat}_ci_low"], defined[f"{stat}_ci_high"]
        assert lo.notna().all() and hi.notna().all(), stat
        assert (lo <= defined[stat] + 1e-9).all() and (defined[stat] <= hi + 1e-9).all(), stat
        assert (hi - lo > 0).all(), stat
    allr = agr[(agr["scope"] == "all") & agr["metric"].isin(METRICS)]
    for stat in ("alpha_ordinal", "fleiss_kappa"):
        assert (allr[f"{stat}_ci_low"] <= allr[stat]).all() and (allr[stat] <= allr[f"{stat}_ci_high"]).all()


def test_ci_statistics_at_the_full_sample_equal_the_point_estimates(with_human) -> None:
    """Each resampled statistic is a function of sums; at weight 1 per question it must give
    the libraries' numbers, so the CIs are intervals around the right quantity."""
    cube, agr = with_human
    k = ALL_SCORE_NAMES.index(OVERALL)
    x = cube.values[:, :, cube.judges.index("human:ann"), k].ravel()
    y = cube.values[:, :, cube.judges.index("judge-x"), k].ravel()
    both = ~np.isnan(x) & ~np.isnan(y)
    xs, ys = x[both], y[both]
    full = _moment_statistics(_moment_columns(xs, ys).sum(0))
    assert len(_MOMENTS) == _moment_columns(xs, ys).shape[1]
    row = agr[(agr["evaluator_a"] == "human:ann") & (agr["evaluator_b"] == "judge-x")
              & (agr["metric"] == OVERALL)].iloc[0]
    for stat in ("exact_agreement", "mean_diff", "mean_abs_diff", "spearman", "icc_consistency"):
        assert full[stat] == pytest.approx(row[stat], rel=1e-9), stat
    conf = np.zeros((10, 10))
    np.add.at(conf, (xs.astype(int) - 1, ys.astype(int) - 1), 1)
    alpha = alpha_ordinal_from_coincidence(conf + conf.T)
    assert alpha == pytest.approx(krippendorff.alpha(reliability_data=np.vstack([xs, ys]),
                                                     level_of_measurement="ordinal"))
    assert alpha == pytest.approx(row["alpha_ordinal"])


def test_alpha_ci_narrows_with_more_questions() -> None:
    widths = []
    for n_q in (30, 240):
        cube = build_cube([synthetic_judgments(n_q, bases=("b1",), seed=3)])
        agr = agreement_table(cube, QuestionBootstrap(n_q, 200, seed=1))
        row = agr[(agr["scope"] == "pair") & (agr["metric"] == OVERALL)].iloc[0]
        assert row["alpha_ordinal_ci_low"] < row["alpha_ordinal"] < row["alpha_ordinal_ci_high"]
        widths.append(row["alpha_ordinal_ci_high"] - row["alpha_ordinal_ci_low"])
    assert widths[1] < 0.7 * widths[0]
