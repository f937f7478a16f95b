"""Length-controlled scores: the closed form against statsmodels, a known slope, the join."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from mentalchat.core.rubric import MEAN_OF_7, OVERALL
from mentalchat.schemas import ANSWERS
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.data import build_cube
from mentalchat.stats.length_control import COLUMNS, answer_lengths, length_control_table

from .conftest import judgments

LEVEL = {"short": 6.0, "long": 5.0, "mid": 5.5}
MEAN_WORDS = {"short": 60, "long": 260, "mid": 150}
SLOPE = 0.8  # score points per 100 words


def _data(n_q: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    items, answers, long_rows = [], [], []
    q_eff = rng.normal(0, 0.5, n_q)
    for q in range(1, n_q + 1):
        for model, level in LEVEL.items():
            words = max(1, int(rng.normal(MEAN_WORDS[model], 40)))
            v = level + SLOPE * words / 100 + q_eff[q - 1] + rng.normal(0, 0.4)
            items.append((q, model, None, None, "judge", [v] * 7, v))
            answers.append({"question_id": str(q), "model_id": model, "answer": " ".join(["w"] * words)})
            long_rows.append((str(q), model, words, v))
    cube = build_cube([judgments(items)])
    return cube, ANSWERS.from_rows(answers), pd.DataFrame(long_rows, columns=["q", "model", "words", "score"])


def test_closed_form_equals_ols_with_clustered_errors() -> None:
    cube, answers, df = _data(50)
    words, notes = answer_lengths(cube, [answers])
    assert not notes and not np.isnan(words).any()
    table = length_control_table(cube, words, QuestionBootstrap(50, 0), metrics=[MEAN_OF_7])
    assert list(table.columns) == COLUMNS and len(table) == 3
    ref, sd = df["words"].mean(), df["words"].std(ddof=1)
    df["z"] = (df["words"] - ref) / sd
    fit = smf.ols("score ~ 0 + C(model) + z", df).fit(cov_type="cluster", cov_kwds={"groups": df["q"]})
    row = table.set_index("model")
    assert row["slope_per_100_words"].iloc[0] == pytest.approx(fit.params["z"] * 100 / sd)
    assert row["slope_se"].iloc[0] == pytest.approx(fit.bse["z"] * 100 / sd)
    for model in LEVEL:
        assert row.loc[model, "lc_mean"] == pytest.approx(fit.params[f"C(model)[{model}]"])
        raw = df[df["model"] == model]["score"].mean()
        assert row.loc[model, "raw_mean"] == pytest.approx(raw)
    assert row["ref_words"].iloc[0] == pytest.approx(ref) and row["n_obs"].iloc[0] == 150


def test_known_slope_is_recovered_and_controls_for_length() -> None:
    cube, answers, _ = _data(120, seed=3)
    words, _ = answer_lengths(cube, [answers])
    table = length_control_table(cube, words, QuestionBootstrap(120, 200, seed=1), metrics=[MEAN_OF_7, OVERALL])
    assert set(table["metric"]) == {MEAN_OF_7, OVERALL}
    t = table[table["metric"] == MEAN_OF_7].set_index("model")
    s = t.iloc[0]
    assert s["slope_ci_low"] < SLOPE < s["slope_ci_high"] and s["slope_p_value"] < 1e-6
    # raw means rank the long model first; at equal length the short one is best, as built
    assert t["raw_mean"].idxmax() == "long" and t["lc_mean"].idxmax() == "short"
    for model, level in LEVEL.items():
        expected = level + SLOPE * s["ref_words"] / 100  # + the mean question effect (~0)
        assert t.loc[model, "lc_ci_low"] < t.loc[model, "lc_mean"] < t.loc[model, "lc_ci_high"]
        assert t.loc[model, "lc_mean"] == pytest.approx(expected, abs=0.25)


def test_lengths_join_by_question_and_model_and_say_what_is_missing() -> None:
    cube, answers, _ = _data(10)
    part = answers.filter(np.array([r != "mid" for r in answers.column("model_id").to_pylist()]))
    extra = ANSWERS.from_rows([{"question_id": "1", "model_id": "short", "answer": "again"},
                               {"question_id": "999", "model_id": "unknown", "answer": "x y"}])
    words, notes = answer_lengths(cube, [part, extra])
    mid = cube.models.index("mid")
    assert np.isnan(words[:, mid]).all() and not np.isnan(np.delete(words, mid, axis=1)).any()
    assert any("repeated" in n for n in notes) and any("`mid`" in n for n in notes)
    table = length_control_table(cube, words, QuestionBootstrap(10, 20), metrics=[MEAN_OF_7])
    assert set(table["model"]) == {"short", "long"}
    none, _ = answer_lengths(cube, [])
    assert length_control_table(cube, none, QuestionBootstrap(10, 20)).empty
