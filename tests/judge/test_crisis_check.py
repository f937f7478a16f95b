"""The judge stage's crisis check: the crisis table from the escalation rule and from each judge."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mentalchat.core.crisis_probes import CRISIS_CATEGORIES, load_probes
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.run import run_judge
from mentalchat.schemas import get_table, read_table, write_table
from mentalchat.testing.fault_server import FaultServer, fill_schema

SAFE = "I'm really worried about you. Please call 988 or your local emergency number right now, and stay with someone."
UNSAFE = "It sounds like a hard week. Try a warm bath and some journaling before bed."


def _crisis_judge(grader: Callable[..., str]) -> Callable[..., str]:
    """A responder saying a reply escalates when it names 988; other prompts go to ``grader``."""

    def respond(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        text = messages[-1]["content"]
        if "escalate appropriately" not in text:
            if params.get("json_schema"):
                return json.dumps(fill_schema(params["json_schema"], text))
            return grader(messages, params)
        escalates = "988" in text.split("<assistant_reply>")[-1]
        if params.get("json_schema"):
            return json.dumps({"escalates": escalates, "reason": "checked for crisis resources"})
        return "Reasoning. " + ("[[YES]]" if escalates else "[[NO]]")

    return respond


def test_crisis_table_from_rule_and_judges(tmp_path: Path, make_inputs, judge_responder) -> None:
    qpath, apath = make_inputs(tmp_path / "in", n_questions=2, models=("m-a",))
    probes = load_probes()
    rows = [{"question_id": p.question_id, "model_id": m, "answer": SAFE if (m == "safe") else UNSAFE}
            for p in probes for m in ("safe", "unsafe")]
    crisis_answers = tmp_path / "crisis_answers.parquet"
    write_table(get_table("answers").from_rows(rows), crisis_answers, "answers")
    out = tmp_path / "out"
    with FaultServer(responder=_crisis_judge(judge_responder)) as srv:
        cfg = JudgeConfig.model_validate({
            "judges": [{"engine": "oa", "name": "json-judge"}, {"engine": "oa", "name": "text-judge", "structured": False}],
            "engines": {"oa": {"backend": "openai", "model": "judge", "base_url": srv.openai_base_url}},
            "crisis": {"enabled": True},
        })
        summary = run_judge(cfg, qpath, [apath, crisis_answers], out, progress=False)
    # Probe answers are checked for escalation, not graded on the seven metrics.
    judgments = read_table(out / "judgments.parquet", "judgments").to_pandas()
    assert not judgments.question_id.str.startswith("crisis-").any()
    table = read_table(out / "crisis.parquet", "crisis").to_pandas()
    n_probes = len(load_probes())
    assert len(table) == n_probes * 2 * 3  # probes x 2 models x (rule + 2 judges)
    assert set(table.checker) == {"rule", "json-judge", "text-judge"}
    assert table.escalated.notna().all() and table.error.isna().all()
    by = table.groupby(["model", "checker"]).escalated.mean()
    for checker in ("rule", "json-judge", "text-judge"):
        assert by[("safe", checker)] == 1.0 and by[("unsafe", checker)] == 0.0
    assert set(table.category) == set(CRISIS_CATEGORIES)
    assert summary.scored == summary.planned


def test_crisis_table_from_the_shared_detector_with_a_model_layer(tmp_path: Path, make_inputs, judge_responder) -> None:
    """``crisis_detector`` with a model layer adds ``model`` and ``detector`` rows beside ``rule``."""
    qpath, apath = make_inputs(tmp_path / "in", n_questions=2, models=("m-a",))
    probes = load_probes()[:3]
    rows = [{"question_id": p.question_id, "model_id": m, "answer": SAFE if m == "safe" else UNSAFE}
            for p in probes for m in ("safe", "unsafe")]
    crisis_answers = tmp_path / "crisis_answers.parquet"
    write_table(get_table("answers").from_rows(rows), crisis_answers, "answers")

    def respond(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        if "counsellor's reply" in messages[0]["content"]:  # the detector's model layer
            return json.dumps({"escalates": "988" in messages[-1]["content"].split("Counsellor's reply:")[-1]})
        return _crisis_judge(judge_responder)(messages, params)

    with FaultServer(responder=respond) as srv:
        cfg = JudgeConfig.model_validate({
            "judges": [{"engine": "oa", "name": "json-judge"}],
            "engines": {"oa": {"backend": "openai", "model": "judge", "base_url": srv.openai_base_url}},
            "crisis": {"enabled": True, "judge_check": False},
            "crisis_detector": {"layers": ["rules", "model"], "model": {"engine": "oa"}},
        })
        run_judge(cfg, qpath, [apath, crisis_answers], tmp_path / "out", progress=False)
    table = read_table(tmp_path / "out" / "crisis.parquet", "crisis").to_pandas()
    assert set(table.checker) == {"rule", "model", "detector"} and len(table) == len(rows) * 3
    by = table.groupby(["model", "checker"]).escalated.mean()
    for checker in ("rule", "model", "detector"):
        assert by[("safe", checker)] == 1.0 and by[("unsafe", checker)] == 0.0
