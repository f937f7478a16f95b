"""Judgment rows → score cube, and the coverage table."""

from __future__ import annotations

import numpy as np
import pytest

from mentalchat.core.model_names import paper_model_map
from mentalchat.core.rubric import ALL_SCORE_NAMES, MEAN_OF_7, METRICS, OVERALL
from mentalchat.schemas import JUDGMENTS, SchemaError
from mentalchat.stats.data import build_cube, coverage_table

from .conftest import judgments


def test_cube_values_mean_of_7_and_mapping() -> None:
    t = judgments([
        (1, "zephyr-7b-alpha", None, None, "j", [8, 7, 9, 6, 7, 5, 8], 7),
        (2, "zephyr-7b-alpha", None, None, "j", None, None),
        (1, "mystery", None, None, "j", [1, 2, 3, 4, 5, 6, 7], None),
    ])
    cube = build_cube([t], paper_model_map())
    assert cube.shape == (2, 2, 1)
    q1, z = cube.questions.index("1"), cube.models.index("zephyr-7b-alpha")
    k7, ko = ALL_SCORE_NAMES.index(MEAN_OF_7), ALL_SCORE_NAMES.index(OVERALL)
    assert cube.values[q1, z, 0, k7] == pytest.approx(50 / 7)
    assert cube.values[q1, z, 0, ko] == 7
    assert np.isnan(cube.values[cube.questions.index("2"), z, 0]).all()
    assert cube.present[:, z, 0].all()  # the unscored judgment still exists
    assert cube.model_config[z] == "base" and cube.unmapped == ["mystery"]


def test_mean_of_7_threshold() -> None:
    row = [8, 7, None, 6, 7, 5, 8]
    t = judgments([(1, "m", "b", "base", "j", row, None)], status="partial")
    k7 = ALL_SCORE_NAMES.index(MEAN_OF_7)
    assert np.isnan(build_cube([t]).values[0, 0, 0, k7])
    assert build_cube([t], mean_of_7_min_metrics=6).values[0, 0, 0, k7] == pytest.approx(41 / 6)


def test_duplicate_rows_and_unknown_metrics_are_errors() -> None:
    t = judgments([(1, "m", "b", "base", "j", [5] * 7, 5)])
    with pytest.raises(SchemaError, match="repeated rows, e.g. question '1', model 'm', judge 'j'"):
        build_cube([t, t])
    bad = JUDGMENTS.from_rows([{"question_id": "1", "model": "m", "judge": "j", "metric": "Humour",
                                "score": 5.0, "parse_status": "ok"}])
    with pytest.raises(SchemaError, match="unknown metric names \\['Humour'\\]"):
        build_cube([bad])
    alias = JUDGMENTS.from_rows([{"question_id": "1", "model": "m", "judge": "j", "metric": "Boundaries and Ethics",
                                  "score": 5.0, "parse_status": "ok"}])
    assert build_cube([alias]).values[0, 0, 0, METRICS.index("Boundaries & Ethical")] == 5.0
    with pytest.raises(SchemaError, match="no rows"):
        build_cube([JUDGMENTS.empty()])


def test_coverage_counts_unscored_items() -> None:
    t = judgments([
        (1, "m", "b", "base", "j", [8] * 7, 8),
        (2, "m", "b", "base", "j", None, None),
        (3, "m", "b", "base", "j", [8, 8, 8, None, 8, 8, 8], None),
    ])
    cov = coverage_table(build_cube([t])).iloc[0]
    assert cov["n_items"] == 3 and cov["n_ok"] == 2 and cov["n_unparsed"] == 1
    assert cov["n_all_metrics"] == 1 and cov["n_missing_metric_scores"] == 8
    assert cov["n_missing_overall"] == 2
