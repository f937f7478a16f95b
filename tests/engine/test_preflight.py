"""Preflight: one check call per engine fails fast, naming the engine and what to change, for the
failures the real APIs produce (their error bodies come from the fault server's provider rules)."""

from __future__ import annotations

import json

import pytest

from mentalchat.core.rubric import judgment_json_schema
from mentalchat.engine.preflight import PreflightCheck, PreflightError, run_preflight, should_preflight
from mentalchat.engine.types import ChatRequest
from mentalchat.testing.fault_server import FaultServer, ProviderRules

KEY = "sk-right-key-0123456789"


def _readable(text: str) -> bool:
    try:
        return "scores" in json.loads(text)
    except json.JSONDecodeError:
        return False


def _check(srv: FaultServer, backend: str, model: str, name: str = "judge-a") -> PreflightCheck:
    req = ChatRequest.from_prompt("p0", "Rate this answer.", json_schema=judgment_json_schema())
    return PreflightCheck(name, srv.engine_config(backend, model=model, http={"max_retries": 0}), req, _readable,
                          label="prompt v1")


def test_should_preflight() -> None:
    assert should_preflight("auto", 5.0, 1.0) and not should_preflight("auto", 0.5, 1.0)
    assert should_preflight("always", 0.0, 1.0) and not should_preflight("never", 99.0, 1.0)


@pytest.mark.parametrize("backend", ["openai", "gemini"])
def test_a_wrong_key_names_the_variable(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-9876543210")
    monkeypatch.setenv("GEMINI_API_KEY", "wrong-gemini-key-000")
    with FaultServer(api_key=KEY, rules=ProviderRules()) as srv:
        with pytest.raises(PreflightError) as err:
            run_preflight([_check(srv, backend, "gpt-6.2-sol" if backend == "openai" else "gemini-3.8-flash")])
        assert srv.count() == 1
    msg = str(err.value)
    assert "engine 'judge-a'" in msg and "refused the API key" in msg
    assert ("$OPENAI_API_KEY" if backend == "openai" else "$GEMINI_API_KEY") in msg
    assert "sk-wrong-key-9876543210" not in msg and "wrong-gemini-key-000" not in msg


@pytest.mark.parametrize(("backend", "model", "replacement"),
                         [("openai", "gpt-4-1106-preview", "gpt-6.2-sol"), ("gemini", "gemini-pro", "gemini-3.8-flash")])
def test_a_retired_model_names_the_replacement(monkeypatch: pytest.MonkeyPatch, backend: str, model: str,
                                               replacement: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with FaultServer(rules=ProviderRules(retirements=True)) as srv:
        with pytest.raises(PreflightError) as err:
            run_preflight([_check(srv, backend, model)], section="judge.engines")
    msg = str(err.value)
    assert "does not serve this model" in msg and replacement in msg and "judge.engines.judge-a.model" in msg


def test_quota_and_unreadable_replies_and_all_engines_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)

    def responder(messages: list[dict[str, str]], params: dict) -> str:
        return "I'd give it a seven overall, I suppose."  # no JSON at all

    with FaultServer(rules=ProviderRules(), responder=responder) as srv:
        srv.script(["quota"], match="Rate this answer")
        checks = [_check(srv, "openai", "gpt-6.2-sol", "judge-a"), _check(srv, "gemini", "gemini-pro", "judge-b")]
        with pytest.raises(PreflightError) as err:
            run_preflight(checks)
    msg = str(err.value)
    assert "engine 'judge-a'" in msg and "quota or credit is used up" in msg
    assert "engine 'judge-b'" in msg and "could not be read" in msg and "capabilities.structured" in msg


def test_passing_checks_return_their_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    lines: list[str] = []
    with FaultServer(rules=ProviderRules()) as srv:
        (res,) = run_preflight([_check(srv, "openai", "gpt-4-1106-preview")], echo=lines.append)
    assert res.ok and _readable(res.text or "")
    assert lines == ["preflight ok: judge-a prompt v1"]
