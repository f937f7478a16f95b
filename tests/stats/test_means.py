"""Means with bootstrap CIs over questions."""

from __future__ import annotations

import numpy as np
import pytest

from mentalchat.core.rubric import MEAN_OF_7, METRICS
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.data import build_cube
from mentalchat.stats.means import means_table
from mentalchat.testing.judgments import synthetic_judgments


def test_weights_are_resamples_of_questions() -> None:
    boot = QuestionBootstrap(37, 250, seed=3)
    w = np.concatenate(list(boot.blocks()))
    assert w.shape == (250, 37)
    assert (w.sum(axis=1) == 37).all() and (w >= 0).all() and np.array_equal(w, np.rint(w))
    # the same seed gives the same resamples; another seed does not
    assert np.array_equal(w, np.concatenate(list(QuestionBootstrap(37, 250, seed=3).blocks())))
    assert not np.array_equal(w, np.concatenate(list(QuestionBootstrap(37, 250, seed=4).blocks())))


def test_ratio_interval_equals_explicit_resampling() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(1, 11, size=(40, 3)).astype(float)
    x[rng.random(x.shape) < 0.2] = np.nan  # unscored items
    boot = QuestionBootstrap(40, 300, seed=1)
    lo, hi = boot.ratio_interval(np.nan_to_num(x), (~np.isnan(x)).astype(float))
    w = np.concatenate(list(boot.blocks())).astype(int)
    for g in range(3):
        # draw each question as often as the weights say, then take the plain mean
        stats = [np.nanmean(np.repeat(x[:, g], counts)) for counts in w]
        assert lo[g] == pytest.approx(np.quantile(stats, 0.025), abs=1e-6)
        assert hi[g] == pytest.approx(np.quantile(stats, 0.975), abs=1e-6)


def test_means_match_pandas_and_cis_are_sane() -> None:
    table = synthetic_judgments(150, missing_rate=0.05, seed=2)
    cube = build_cube([table])
    boot = QuestionBootstrap(len(cube.questions), 500, seed=0)
    means = means_table(cube, boot)
    df = table.to_pandas()
    ref = df.groupby(["model", "judge", "metric"])["score"].agg(["mean", "std", "count"])
    got = means[means["metric"].isin(METRICS)].set_index(["model", "judge", "metric"]).loc[ref.index]
    np.testing.assert_allclose(got["mean"], ref["mean"])
    np.testing.assert_allclose(got["sd"], ref["std"])
    assert (got["n"].to_numpy() == ref["count"].to_numpy()).all()
    assert (got["n_items"] == 150).all() and (got["n"] < 150).any()
    assert (means["ci_low"] <= means["mean"]).all() and (means["mean"] <= means["ci_high"]).all()
    # iid-ish per question here, so the percentile CI is close to the normal one
    m7 = means[means["metric"] == MEAN_OF_7]
    normal = 2 * 1.96 * m7["sd"] / np.sqrt(m7["n"])
    ratio = (m7["ci_high"] - m7["ci_low"]) / normal
    assert ratio.between(0.8, 1.2).all()


def test_no_bootstrap_gives_null_cis() -> None:
    cube = build_cube([synthetic_judgments(10)])
    means = means_table(cube, QuestionBootstrap(10, 0))
    assert means["ci_low"].isna().all() and means["mean"].notna().all()
