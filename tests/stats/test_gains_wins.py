"""Gains over base models (paired bootstrap, Wilcoxon, correction) and win tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

from mentalchat.core.rubric import MEAN_OF_7, METRICS
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.config import StatsConfig
from mentalchat.stats.data import build_cube
from mentalchat.stats.gains import gains_table
from mentalchat.stats.means import means_table
from mentalchat.stats.wins import wins_table
from mentalchat.testing.judgments import synthetic_judgments

GAINS = {"base": 0.0, "synthetic": 1.2, "interview": 0.0, "combined": 0.6}


@pytest.fixture(scope="module")
def planted():
    table = synthetic_judgments(300, bases=("b1", "b2"), gains=GAINS, missing_rate=0.02, seed=5)
    cfg = StatsConfig(bootstrap=400)
    cube = build_cube([table])
    boot = QuestionBootstrap(len(cube.questions), cfg.bootstrap, cfg.seed, cfg.ci_level)
    gains, notes = gains_table(cube, boot, cfg)
    return table, cube, gains, notes, cfg


def test_planted_gains_are_recovered(planted) -> None:
    _, _, gains, notes, _ = planted
    assert notes == []
    assert len(gains) == 2 * 3 * 2 * 9  # bases × configs × judges × score names
    m7 = gains[gains["metric"] == MEAN_OF_7]
    for cfg_name, true_gain in GAINS.items():
        if cfg_name == "base":
            continue
        rows = m7[m7["data_config"] == cfg_name]
        assert ((rows["diff_ci_low"] <= true_gain + 0.15) & (rows["diff_ci_high"] >= true_gain - 0.15)).all()
        assert (rows["diff"] - true_gain).abs().max() < 0.25
        if true_gain > 0:
            assert rows["significant"].all() and (rows["rel_gain"] > 0).all()
    null = gains[(gains["data_config"] == "interview") & gains["metric"].isin(METRICS)]
    assert null["significant"].mean() < 0.2  # no planted effect: mostly not significant


def test_paired_statistics_match_scipy_and_statsmodels(planted) -> None:
    table, _, gains, _, cfg = planted
    df = table.to_pandas()
    row = gains[(gains["model"] == "b2-combined") & (gains["judge"] == "judge-y")
                & (gains["metric"] == METRICS[2])].iloc[0]
    sel = df[(df["judge"] == "judge-y") & (df["metric"] == METRICS[2])]
    tuned = sel[sel["model"] == "b2-combined"].set_index("question_id")["score"]
    base = sel[sel["model"] == "b2"].set_index("question_id")["score"]
    pair = pd.concat([tuned, base], axis=1, keys=["t", "b"]).dropna()
    assert row["n_pairs"] == len(pair)
    assert row["diff"] == pytest.approx((pair["t"] - pair["b"]).mean())
    assert row["rel_gain"] == pytest.approx(pair["t"].mean() / pair["b"].mean() - 1)
    assert row["p_value"] == pytest.approx(wilcoxon(pair["t"] - pair["b"]).pvalue)
    family = gains[gains["judge"] == "judge-y"]
    adjusted = multipletests(family["p_value"], method="holm")[1]
    np.testing.assert_allclose(family["p_adjusted"], adjusted)


def test_unpaired_models_are_noted() -> None:
    table = synthetic_judgments(20, bases=("b1",), gains={"synthetic": 1.0}, seed=1)
    cube = build_cube([table])
    gains, notes = gains_table(cube, QuestionBootstrap(20, 50), StatsConfig(bootstrap=50))
    assert gains.empty and "has no untuned 'b1'" in notes[0]


def test_wins_ranks_ties_and_counts() -> None:
    rows = []
    for judge in ("j1", "j2"):
        for base, means in {"A": [5, 7, 6, 7], "B": [5, 8, 6, 6], "C": [9, 7, 6, 7]}.items():
            for cfg_name, mean in zip(["base", "synthetic", "interview", "combined"], means, strict=True):
                rows.append({"model": f"{base}-{cfg_name}", "base_model": base, "data_config": cfg_name,
                             "judge": judge, "metric": MEAN_OF_7, "mean": float(mean)})
    rows.append({"model": "X", "base_model": None, "data_config": "baseline", "judge": "j1",
                 "metric": MEAN_OF_7, "mean": 10.0})
    wins = wins_table(pd.DataFrame(rows), ["synthetic", "interview", "combined"])
    j1 = wins[wins["judge"] == "j1"]
    assert len(j1) == 12 and "X" not in set(j1["model"])  # baselines are not a configuration
    a = j1[j1["base_model"] == "A"].set_index("data_config")
    assert a.loc["synthetic", "is_winner"] and a.loc["combined", "is_winner"] and a.loc["synthetic", "tied"]
    assert a.loc["synthetic", "rank"] == 1 and a.loc["interview", "rank"] == 3
    counts = j1.drop_duplicates("data_config").set_index("data_config")["win_count"]
    assert counts.to_dict() == {"base": 1, "synthetic": 2, "interview": 0, "combined": 1}
    assert (j1["n_bases"] == 3).all()


def test_wins_on_cube_means(planted) -> None:
    _, cube, _, _, cfg = planted
    means = means_table(cube, QuestionBootstrap(len(cube.questions), 0))
    wins = wins_table(means, cfg.fine_tuned_configs)
    m7 = wins[(wins["metric"] == MEAN_OF_7) & wins["is_winner"]]
    assert set(m7["data_config"]) == {"synthetic"}  # the largest planted gain wins everywhere
