"""The judge stage against judges as the APIs really serve them: the paper's judges (gpt-4-1106-preview
has JSON mode but no Structured Outputs; gemini-pro has no JSON mode), the current profile, a
preflight that stops a doomed sweep, unreadable replies asked again, and unpriced engines under a
budget. The fault server's provider rules answer the way the real APIs do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mentalchat.config import ConfigError, load_stage_config
from mentalchat.core.rubric import METRICS
from mentalchat.engine.preflight import PreflightError
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.run import run_judge
from mentalchat.schemas import read_table
from mentalchat.testing.fault_server import FaultServer, ProviderRules, fill_schema
from mentalchat.testing.fault_server.schema_fill import schema_in_prompt

FAST = "{max_retries: 2, backoff_base_s: 0.01, backoff_max_s: 0.05, timeout_s: 2.0, max_concurrency: 4}"


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-not-a-secret")


def _config(repo_root: Path, name: str, srv: FaultServer, *extra: str) -> JudgeConfig:
    doc = load_stage_config(JudgeConfig, repo_root / "configs" / f"{name}.yaml", section="judge")
    overrides = []
    for judge in doc.judges:
        eng = doc.engines[judge.engine]
        url = srv.openai_base_url if eng.backend == "openai" else srv.base_url
        overrides += [f"engines.{judge.engine}.base_url={url}", f"engines.{judge.engine}.http={FAST}",
                      f"engines.{judge.engine}.cache_dir=null"]
    overrides += ["reliability.enabled=false", *extra]
    return load_stage_config(JudgeConfig, repo_root / "configs" / f"{name}.yaml", overrides, section="judge")


def _judgments(out: Path):
    return read_table(out / "judgments.parquet", "judgments").to_pandas()


def test_the_paper_config_scores_every_item_against_the_real_rules(tmp_path: Path, repo_root: Path, inputs) -> None:
    """Done-when of the issue: the paper's judges, each sent what its model takes."""
    qpath, apath = inputs
    with FaultServer(rules=ProviderRules()) as srv:
        cfg = _config(repo_root, "paper", srv)
        summary = run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False, preflight="always")
        refused = srv.count(status=400)
        gpt4 = srv.matching(protocol="openai")
        gemini = srv.matching(protocol="gemini")
    assert summary.failed == 0 and summary.scored == summary.planned > 0, summary.failures
    assert refused == 0  # the capability table already knew
    assert summary.preflight
    assert {r.body.get("response_format", {}).get("type") for r in gpt4} == {"json_object"}
    assert all("responseMimeType" not in (r.body.get("generationConfig") or {}) for r in gemini)
    df = _judgments(tmp_path / "out")
    assert df[df.metric.isin(METRICS)].score.between(1, 10).all()


def test_forced_strict_output_is_downgraded_and_counted(tmp_path: Path, repo_root: Path, inputs) -> None:
    """A config that claims Structured Outputs for gpt-4-1106-preview: the real 400 downgrades it once."""
    qpath, apath = inputs
    with FaultServer(rules=ProviderRules()) as srv:
        cfg = _config(repo_root, "paper", srv, "engines.gpt4-judge.capabilities={structured: json_schema}",
                      "engines.gemini-judge.capabilities={structured: json_schema}", "crisis.enabled=false")
        summary = run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False, preflight="never")
    assert summary.failed == 0, summary.failures
    assert summary.adaptations["gpt-4-1106-preview"] == {"response_format: json_schema -> json_object": 8}
    assert summary.adaptations["gemini-pro"] == {"response_format: json_schema -> text": 8}


def test_a_retired_model_stops_at_the_preflight(tmp_path: Path, repo_root: Path, inputs) -> None:
    """Against today's API the paper's judges are shut down: one call each, no sweep, a message saying what to use."""
    qpath, apath = inputs
    with FaultServer(rules=ProviderRules(retirements=True)) as srv:
        cfg = _config(repo_root, "paper", srv)
        with pytest.raises(PreflightError) as err:
            run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False, preflight="always")
        calls = srv.count()
    msg = str(err.value)
    assert "judge.engines.gpt4-judge.model" in msg and "judge.engines.gemini-judge.model" in msg
    assert "gpt-6.2-sol" in msg and "gemini-3.8-flash" in msg
    assert calls == 2  # one check call per judge, then no sweep
    assert not (tmp_path / "out" / "judgments.parquet").exists()


def test_the_current_profile_runs_against_the_real_rules(tmp_path: Path, repo_root: Path, inputs) -> None:
    qpath, apath = inputs
    with FaultServer(rules=ProviderRules(retirements=True)) as srv:
        cfg = _config(repo_root, "judges-current", srv, "crisis.enabled=false")
        summary = run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False, preflight="always")
        refused = srv.count(status=400) + srv.count(status=404)
    assert summary.failed == 0 and summary.scored == summary.planned, summary.failures
    assert refused == 0 and not summary.adaptations


def test_unreadable_replies_are_asked_again_and_paid_for(tmp_path: Path, repo_root: Path, inputs) -> None:
    qpath, apath = inputs
    seen: dict[str, int] = {}

    def responder(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        prompt = messages[-1]["content"]
        schema = params.get("json_schema") or schema_in_prompt(prompt)
        full = json.dumps(fill_schema(schema, prompt))
        if "answer to q2 by m-a" in prompt:
            seen["q2"] = seen.get("q2", 0) + 1
            if seen["q2"] == 1:
                return full[: len(full) // 2]  # cut JSON, finish_reason "stop"
        if "answer to q3 by m-a" in prompt:
            return "I cannot score this."
        return full

    with FaultServer(rules=ProviderRules(), responder=responder) as srv:
        cfg = _config(repo_root, "judges-current", srv, "crisis.enabled=false",
                      "engines.gpt-judge.price_in_per_mtok=1000", "engines.gpt-judge.price_out_per_mtok=1000",
                      "judges=[{engine: gpt-judge}]")
        summary = run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False, preflight="never")
    df = _judgments(tmp_path / "out")
    q2 = df[(df.question_id == "2") & (df.model == "m-a")].iloc[0]
    q3 = df[(df.question_id == "3") & (df.model == "m-a")].iloc[0]
    assert q2.parse_status == "ok" and q2.attempts == 2
    assert q3.parse_status == "unparsed" and q3.attempts == 2  # asked once more (the default), then reported
    assert summary.reasked == 2 and summary.failures == {"unparsed": 1}
    single = df[(df.question_id == "1") & (df.model == "m-a")].iloc[0].cost_usd
    assert q3.cost_usd > 1.5 * single  # both calls paid for


def test_no_reask_when_turned_off(tmp_path: Path, repo_root: Path, inputs) -> None:
    qpath, apath = inputs

    def responder(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        return "no numbers here"

    with FaultServer(rules=ProviderRules(), responder=responder) as srv:
        cfg = _config(repo_root, "judges-current", srv, "crisis.enabled=false", "parse_retries=0",
                      "judges=[{engine: gpt-judge}]")
        summary = run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False, preflight="never")
        calls = srv.count()
    assert summary.reasked == 0 and calls == summary.planned


def test_an_unpriced_paid_engine_does_not_start_under_a_budget(tmp_path: Path, repo_root: Path, inputs) -> None:
    qpath, apath = inputs
    cfg = JudgeConfig.model_validate({
        "judges": [{"engine": "new"}], "budget_usd": 10,
        "engines": {"new": {"backend": "openai", "model": "brand-new-model", "base_url": "https://api.example.com/v1"}},
    })
    with pytest.raises(ConfigError, match=r"engines\.new\.price_in_per_mtok"):
        run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False)
