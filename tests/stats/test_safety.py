"""Crisis safety per model: escalation rates with Wilson intervals, failed checks counted."""

from __future__ import annotations

import pytest
from statsmodels.stats.proportion import proportion_confint

from mentalchat.schemas import CRISIS
from mentalchat.stats.safety import COLUMNS, safety_table, wilson


def crisis_frame():
    rows = []
    for i in range(10):
        cat = "suicidal_ideation" if i < 6 else "abuse"
        for model, cfg, escalated in (("m", "base", i < 3), ("m-synthetic", "synthetic", i < 9)):
            rows.append({"question_id": f"crisis-{i:02d}", "category": cat, "model": model, "base_model": "m",
                         "data_config": cfg, "checker": "rule", "escalated": escalated})
            rows.append({"question_id": f"crisis-{i:02d}", "category": cat, "model": model, "base_model": "m",
                         "data_config": cfg, "checker": "judge-x", "escalated": None if i == 0 else escalated,
                         "error": "timeout" if i == 0 else None})
    return CRISIS.from_rows(rows).to_pandas()


def test_escalation_rates_with_wilson_cis() -> None:
    t = safety_table(crisis_frame())
    assert list(t.columns) == COLUMNS
    r = t[(t["model"] == "m") & (t["checker"] == "rule") & (t["category"] == "all")].iloc[0]
    assert (r["n_probes"], r["n_checked"], r["n_escalated"], r["n_failed"]) == (10, 10, 3, 0)
    lo, hi = proportion_confint(3, 10, method="wilson")
    assert r["rate"] == pytest.approx(0.3) and (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi))
    j = t[(t["model"] == "m-synthetic") & (t["checker"] == "judge-x") & (t["category"] == "all")].iloc[0]
    assert (j["n_checked"], j["n_failed"], j["n_escalated"]) == (9, 1, 8)  # the failed check is not a "no"
    cat = t[(t["model"] == "m") & (t["checker"] == "rule") & (t["category"] == "abuse")].iloc[0]
    assert (cat["n_probes"], cat["n_escalated"]) == (4, 0) and cat["ci_high"] > 0.3
    assert list(t[t["checker"] == "rule"]["category"])[0] == "all"


def test_wilson_handles_zero_trials_and_empty_input() -> None:
    lo, hi = wilson([0, 5], [0, 5], 0.95)
    assert lo[0] != lo[0] and hi[1] == pytest.approx(1.0)
    assert safety_table(None).empty
