"""Judge controls: the reliability table summarised, position bias from pairwise verdicts,
empty answers read off the judgments, pairwise win rates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from mentalchat.core.rubric import METRICS, OVERALL
from mentalchat.schemas import RELIABILITY
from mentalchat.stats.controls import (
    CHECKS,
    COLUMNS,
    empty_answer_rows,
    judge_controls_table,
    pairwise_position_rows,
    pairwise_wins_table,
)
from mentalchat.stats.data import build_cube

from .conftest import judgments

PAIRWISE_COLUMNS = ["question_id", "judge", "prompt_version", "model_a", "model_b", "base_model", "data_config",
                    "order", "verdict_position", "winner", "reason", "raw_text", "error"]


def reliability_frame(bad_judge: str = "judge-bad", good_judge: str = "judge-ok") -> pd.DataFrame:
    """Reliability rows as the judge stage writes them: ``bad_judge`` scores an empty answer 8
    on Empathy and overall; ``good_judge`` passes everything."""
    rows = []
    for judge in (good_judge, bad_judge):
        for metric in (*METRICS, OVERALL):
            bad = judge == bad_judge and metric in (METRICS[1], OVERALL)
            rows.append({"judge": judge, "prompt_version": "v1", "check": "empty_answer", "metric": metric,
                         "n": 4, "n_failed": 0, "value": 2.75 if bad else 1.0, "rate": 0.25 if bad else 0.0,
                         "flagged": bad, "detail": json.dumps({"threshold": 1.0, "max": 8 if bad else 1})})
            rows.append({"judge": judge, "prompt_version": "v1", "check": "length_bias", "metric": metric,
                         "n": 5, "n_failed": 1, "value": 0.2, "rate": 0.4, "flagged": False,
                         "detail": json.dumps({"threshold": 0.5})})
            rows.append({"judge": judge, "prompt_version": "v1", "check": "self_consistency", "metric": metric,
                         "n": 5, "n_failed": 0, "value": 0.4, "rate": 0.6, "flagged": False,
                         "detail": json.dumps({"threshold": 1.0})})
    return RELIABILITY.from_rows(rows).to_pandas()


def pairwise_frame(flip_questions: int = 3, n_questions: int = 10, judge: str = "judge-ok") -> pd.DataFrame:
    """Both orders of (tuned, base) for ``n_questions``; on the first ``flip_questions`` the judge
    picks whichever answer comes first (a flip), elsewhere the tuned model in both orders, except
    one question it ties in one order."""
    rows = []
    for q in range(1, n_questions + 1):
        for order in ("ab", "ba"):
            first = "m-tuned" if order == "ab" else "m-base"
            if q <= flip_questions:
                winner, position = first, "first"
            elif q == n_questions and order == "ba":
                winner, position = "tie", "tie"
            else:
                winner = "m-tuned"
                position = "first" if first == winner else "second"
            rows.append({"question_id": str(q), "judge": judge, "prompt_version": "pw-v1", "model_a": "m-tuned",
                         "model_b": "m-base", "base_model": "m", "data_config": "synthetic", "order": order,
                         "verdict_position": position, "winner": winner, "reason": None, "raw_text": None,
                         "error": None})
    rows.append({**rows[-1], "question_id": "99", "order": "ab", "verdict_position": None, "winner": None,
                 "error": "timeout"})  # a failed call: not a pair read in both orders
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)  # the judge stage's pairwise table


def test_reliability_summary_flags_the_failing_judge() -> None:
    t = judge_controls_table(["judge-ok", "judge-bad", "human:ann"], reliability=reliability_frame(),
                             pairwise=None)
    assert list(t.columns) == COLUMNS
    assert set(t["judge"]) == {"judge-ok", "judge-bad"}  # human raters are not judges
    assert len(t) == 2 * len(CHECKS)  # every judge and check: a row, run or not
    bad = t[(t["judge"] == "judge-bad") & (t["check"] == "empty_answer")].iloc[0]
    assert bad["status"] == "FAILED" and bad["flagged"] and bad["metrics_flagged"] == 2 and bad["n_metrics"] == 8
    assert bad["value"] == 2.75 and bad["threshold"] == 1.0 and METRICS[1] in bad["detail"]
    lo, hi = proportion_confint(1, 4, method="wilson")
    assert bad["rate_ci_low"] == pytest.approx(lo) and bad["rate_ci_high"] == pytest.approx(hi)
    ok = t[t["judge"] == "judge-ok"].set_index("check")
    assert list(ok.loc[["empty_answer", "length_bias", "self_consistency"], "status"]) == ["passed"] * 3
    assert ok.loc["length_bias", "n_failed"] == 1
    pos = ok.loc["position_bias"]
    assert pos["status"] == "not run" and "pairwise" in pos["detail"]


def test_position_bias_from_pairwise_verdicts() -> None:
    pw = pairwise_frame(flip_questions=3, n_questions=10)
    rows = pairwise_position_rows(pw)
    r = rows.iloc[0]
    assert r["n"] == 10 and r["n_failed"] == 1
    assert r["value"] == pytest.approx(4 / 10)  # 3 position flips + the tie in one order
    decisive_first = (pw["verdict_position"] == "first").sum()
    decisive = pw["verdict_position"].isin(["first", "second"]).sum()
    assert r["rate"] == pytest.approx(decisive_first / decisive) and r["flagged"]  # 0.4 > 0.35
    t = judge_controls_table(["judge-ok"], reliability=reliability_frame(), pairwise=pw)
    pos = t[(t["judge"] == "judge-ok") & (t["check"] == "position_bias")].iloc[0]
    assert pos["status"] == "FAILED" and pos["source"] == "pairwise table"
    lo, hi = proportion_confint(4, 10, method="wilson")
    assert (pos["value_ci_low"], pos["value_ci_high"]) == pytest.approx((lo, hi))
    calm = judge_controls_table(["judge-ok"], reliability=None, pairwise=pairwise_frame(flip_questions=1))
    assert calm.set_index("check").loc["position_bias", "status"] == "passed"
    # a reliability position_bias row wins over the pairwise table
    rel = pd.concat([reliability_frame(), pd.DataFrame([{
        "judge": "judge-ok", "prompt_version": "pw-v1", "check": "position_bias", "metric": OVERALL, "n": 10,
        "n_failed": 0, "value": 0.1, "rate": 0.55, "flagged": False, "detail": None}])])
    t = judge_controls_table(["judge-ok"], reliability=rel, pairwise=pw)
    pos = t[(t["judge"] == "judge-ok") & (t["check"] == "position_bias")]
    assert len(pos) == 1 and pos.iloc[0]["source"] == "reliability table" and pos.iloc[0]["status"] == "passed"
    # asked in one order only: the judge stage writes a null flip rate and says why
    once = rel.assign(value=lambda d: d["value"].where(d["check"] != "position_bias"),
                      n=lambda d: d["n"].where(d["check"] != "position_bias", 0),
                      detail=lambda d: d["detail"].where(d["check"] != "position_bias", json.dumps(
                          {"note": "flip rate not measured: no pair was asked in both orders"})))
    pos = judge_controls_table(["judge-ok"], reliability=once, pairwise=None).set_index(["judge", "check"])
    assert pos.loc[("judge-ok", "position_bias"), "status"] == "not run"
    assert "both orders" in pos.loc[("judge-ok", "position_bias"), "detail"]


def test_pairwise_wins_need_both_orders() -> None:
    w = pairwise_wins_table(pairwise_frame(flip_questions=3, n_questions=10)).iloc[0]
    assert (w["n"], w["wins_a"], w["wins_b"], w["ties"], w["inconsistent"]) == (10, 6, 0, 1, 3)
    assert w["win_rate_a"] == pytest.approx((6 + 0.5 * 4) / 10)
    assert w["ci_low"] < w["win_rate_a"] < w["ci_high"]
    assert pairwise_wins_table(None).empty


def test_empty_answers_in_the_judgments_become_the_empty_answer_control() -> None:
    items = [(1, "m1", "b", "base", "j", [1] * 7, 1.0), (2, "m1", "b", "base", "j", [8] * 7, 7.0),
             (1, "m2", "b", "synthetic", "j", [1] * 7, 1.0), (2, "m2", "b", "synthetic", "j", [5] * 7, 5.0),
             (1, "m1", "b", "base", "human:ann", [9] * 7, 9.0)]
    cube = build_cube([judgments(items)])
    words = np.array([[0.0, 2.0], [0.0, 120.0]])  # (question, model): three empty or near-empty answers
    rows = empty_answer_rows(cube, words)
    assert set(rows["judge"]) == {"j"}
    ov = rows[rows["metric"] == OVERALL].iloc[0]
    assert ov["n"] == 3 and ov["value"] == pytest.approx(3.0) and ov["rate"] == pytest.approx(1 / 3) and ov["flagged"]
    t = judge_controls_table(cube.judges, reliability=None, pairwise=None, derived_empty=rows)
    e = t.set_index("check").loc["empty_answer"]
    assert e["status"] == "FAILED" and e["source"].startswith("judgments of answers of")
    assert empty_answer_rows(cube, np.full((2, 2), np.nan)).empty
    unscored = judgments([(1, "m1", "b", "base", "j", None, None), (2, "m1", "b", "base", "j", [5] * 7, 5.0)])
    cube = build_cube([unscored])
    t = judge_controls_table(cube.judges, reliability=None, pairwise=None,
                             derived_empty=empty_answer_rows(cube, np.array([[0.0], [50.0]])))
    e = t.set_index("check").loc["empty_answer"]
    assert e["status"] == "not run" and "none scored" in e["detail"]  # nothing measured is not a pass
