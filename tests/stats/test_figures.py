"""Figures that must not fail on legitimate tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mentalchat.core.rubric import MEAN_OF_7
from mentalchat.stats import figures


def test_gains_forest_draws_an_estimate_outside_its_percentile_ci(tmp_path: Path) -> None:
    # Two paired questions: the percentile bootstrap CI can miss the estimate (seen with human raters).
    gains = pd.DataFrame([{"judge": "human:r1", "metric": MEAN_OF_7, "base_model": "b1", "data_config": "synthetic",
                           "model": "b1-synthetic", "diff": 0.5, "diff_ci_low": 0.6, "diff_ci_high": 1.2}])
    path = figures.gains_forest(gains, ["synthetic"], tmp_path / "gains.png")
    assert path is not None and path.stat().st_size > 1000


def test_error_bars_are_never_negative_and_zero_where_unknown() -> None:
    err = figures._bars([5.0, 2.0, 3.0], [4.0, 2.5, float("nan")], [6.0, 3.0, 4.0])
    assert err.tolist() == [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
