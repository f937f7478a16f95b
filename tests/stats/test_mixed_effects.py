"""The mixed-effects gains model: a hand-computed balanced case, a known effect, awkward fits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mentalchat.core.rubric import MEAN_OF_7
from mentalchat.stats.data import build_cube
from mentalchat.stats.mixed_effects import COLUMNS, mixed_effects_table

from .conftest import judgments

CONFIGS = ["synthetic", "interview"]
TRUE_GAIN = {"base": 0.0, "synthetic": 1.0, "interview": 0.5}
BASE_LEVEL = {"b1": 5.0, "b2": 6.0}


def _cube(n_q: int, *, seed: int, q_sd: float = 1.0, noise: float = 0.5, center_noise: bool = False):
    """Continuous mean_of_7 scores (all seven metrics equal) for every (question, model): a
    balanced design with known configuration effects."""
    rng = np.random.default_rng(seed)
    models = [(b, c) for b in BASE_LEVEL for c in TRUE_GAIN]
    eps = rng.normal(0, noise, size=(n_q, len(models)))
    if center_noise:  # every question has the same mean: no question variance at all
        eps -= eps.mean(axis=1, keepdims=True)
    q_eff = rng.normal(0, q_sd, size=n_q)
    items, truth = [], []
    for q in range(n_q):
        for m, (b, c) in enumerate(models):
            v = BASE_LEVEL[b] + TRUE_GAIN[c] + q_eff[q] + eps[q, m]
            name = b if c == "base" else f"{b}-{c}"
            items.append((q + 1, name, b, c, "judge", [v] * 7, v))
            truth.append((c, v))
    return build_cube([judgments(items)]), truth


def _row(df, cfg: str):
    return df[(df["metric"] == MEAN_OF_7) & (df["data_config"] == cfg)].iloc[0]


def test_balanced_design_equals_the_difference_of_means() -> None:
    cube, truth = _cube(30, seed=1)
    df = mixed_effects_table(cube, CONFIGS, metrics=[MEAN_OF_7])
    assert list(df.columns) == COLUMNS and len(df) == 2
    base_mean = np.mean([v for c, v in truth if c == "base"])
    for cfg in CONFIGS:
        hand = np.mean([v for c, v in truth if c == cfg]) - base_mean
        row = _row(df, cfg)
        assert row["estimate"] == pytest.approx(hand, abs=1e-6)
        assert row["n_obs"] == 30 * 6 and row["n_questions"] == 30 and row["n_models"] == 6
        assert row["term"] == f'C(data_config, Treatment("base"))[T.{cfg}]'


def test_known_effect_is_recovered() -> None:
    cube, _ = _cube(80, seed=7)
    df = mixed_effects_table(cube, CONFIGS, metrics=[MEAN_OF_7])
    for cfg in CONFIGS:
        row = _row(df, cfg)
        assert row["converged"] and row["note"] is None
        assert row["ci_lo"] < TRUE_GAIN[cfg] < row["ci_hi"]
        assert abs(row["estimate"] - TRUE_GAIN[cfg]) < 3 * row["se"] and row["se"] < 0.1
        assert row["p_value"] < 1e-6
        assert 0.5 < row["group_var"] < 1.6 and 0.15 < row["resid_var"] < 0.4  # 1.0 and 0.25


def test_singular_and_failed_fits_give_notes_not_crashes() -> None:
    cube, _ = _cube(20, seed=3, q_sd=0.0, center_noise=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # statsmodels' warnings must end in the note, not escape
        df = mixed_effects_table(cube, CONFIGS, metrics=[MEAN_OF_7])
    row = _row(df, "synthetic")
    assert "singular fit" in row["note"]
    assert row["estimate"] == pytest.approx(1.0, abs=0.3)
    flat = [(q, name, b, c, "judge", [5.0] * 7, 5.0)
            for q in range(1, 6) for b in BASE_LEVEL for c in ("base", "synthetic")
            for name in [b if c == "base" else f"{b}-{c}"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = mixed_effects_table(build_cube([judgments(flat)]), CONFIGS, metrics=[MEAN_OF_7])
    assert len(df) == 1 and df["note"].iloc[0]  # constant scores: a row that says what happened
    two = [(q, name, "b1", c, "judge", [5.0 + q] * 7, 5.0) for q in (1, 2)
           for c, name in (("base", "b1"), ("synthetic", "b1-synthetic"))]
    df = mixed_effects_table(build_cube([judgments(two)]), CONFIGS, metrics=[MEAN_OF_7])
    assert df["note"].iloc[0] == "fewer than 3 questions: not fitted" and np.isnan(df["estimate"].iloc[0])


def test_closed_form_reml_equals_mixedlm_on_an_unbalanced_design() -> None:
    """What large runs use instead of MixedLM gives MixedLM's numbers (rows dropped at random)."""
    cube, _ = _cube(60, seed=5)
    rng = np.random.default_rng(0)
    drop = rng.random(cube.values.shape[:3]) < 0.15
    cube.values[drop] = np.nan
    with_statsmodels = mixed_effects_table(cube, CONFIGS, metrics=[MEAN_OF_7]).set_index("data_config")
    closed = mixed_effects_table(cube, CONFIGS, metrics=[MEAN_OF_7], statsmodels_max_obs=0).set_index("data_config")
    assert with_statsmodels["n_obs"].iloc[0] < 60 * 6 and closed["note"].str.contains("closed-form").all()
    for col in ("estimate", "se", "ci_lo", "ci_hi"):
        np.testing.assert_allclose(closed[col], with_statsmodels[col], rtol=1e-4, err_msg=col)
    for col in ("group_var", "resid_var"):
        np.testing.assert_allclose(closed[col], with_statsmodels[col], rtol=1e-3, err_msg=col)
    flat, _ = _cube(20, seed=3, q_sd=0.0, center_noise=True)
    closed = mixed_effects_table(flat, CONFIGS, metrics=[MEAN_OF_7], statsmodels_max_obs=0)
    assert closed["note"].str.contains("singular fit").all() and closed["estimate"].notna().all()
