"""The OpenAI backend: what the official SDK sends, key and base-URL handling, error mapping."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mentalchat.engine import ChatRequest, EngineConfig, SamplingConfig, create_engine
from mentalchat.engine.openai_backend import OpenAIEngine, openai_params
from mentalchat.testing.fault_server import Fault, FaultServer

SCHEMA = {
    "title": "Judge scores",
    "type": "object",
    "properties": {
        "empathy": {"type": "integer", "minimum": 1, "maximum": 10},
        "rationale": {"type": "string"},
    },
    "required": ["empathy", "rationale"],
    "additionalProperties": False,
}


@pytest.fixture
def srv():
    with FaultServer() as server:
        yield server


def test_registered() -> None:
    eng = create_engine(EngineConfig(backend="openai", model="m", base_url="http://127.0.0.1:9/v1"))
    assert isinstance(eng, OpenAIEngine) and eng.supports_json_schema


def test_request_shape_and_json_schema(srv: FaultServer) -> None:
    sampling = SamplingConfig(temperature=0.2, top_p=0.9, max_tokens=64, seed=7, stop=["END"])
    req = ChatRequest.from_prompt("j1", "Rate this answer.", system="You are a judge.", json_schema=SCHEMA, sampling=sampling)
    with create_engine(srv.engine_config("openai", model="gpt-4o-mini")) as eng:
        (res,) = eng.chat_batch([req])
    assert res.ok
    value = json.loads(res.text)
    jsonschema.validate(value, SCHEMA)
    body = srv.requests[0].body
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [{"role": "system", "content": "You are a judge."}, {"role": "user", "content": "Rate this answer."}]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"], body["stop"]) == (0.2, 0.9, 64, 7, ["END"])
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Judge_scores", "schema": SCHEMA, "strict": True},
    }


def test_reasoning_models_get_max_completion_tokens() -> None:
    req = ChatRequest.from_prompt("a", "hi")
    assert "max_completion_tokens" in openai_params("o3-mini", req, SamplingConfig(max_tokens=9))
    params = openai_params("gpt-4-1106-preview", req, SamplingConfig(max_tokens=9))
    assert params["max_tokens"] == 9 and "max_completion_tokens" not in params and "response_format" not in params


def test_key_is_sent_as_bearer(srv: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_OPENAI_TEST_KEY", "sk-the-right-key-0000")
    srv.api_key = "sk-the-right-key-0000"
    with create_engine(srv.engine_config("openai", api_key_env="MC_OPENAI_TEST_KEY")) as eng:
        assert eng.chat_batch([ChatRequest.from_prompt("a", "hi")])[0].ok


def test_local_endpoint_needs_no_key(srv: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with create_engine(srv.engine_config("openai")) as eng:
        assert eng.chat_batch([ChatRequest.from_prompt("a", "hi")])[0].ok


def test_remote_endpoint_without_key_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MC_MISSING_KEY", raising=False)
    with pytest.raises(ValueError, match="MC_MISSING_KEY"):
        create_engine(EngineConfig(backend="openai", model="gpt-4o", api_key_env="MC_MISSING_KEY"))


def test_base_url_from_environment(srv: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", srv.openai_base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with create_engine(EngineConfig(backend="openai", model="m", http={"max_retries": 0})) as eng:
        assert eng.base_url == srv.openai_base_url
        assert eng.chat_batch([ChatRequest.from_prompt("a", "hi")])[0].ok
    assert srv.count(protocol="openai") == 1


def test_insufficient_quota_is_not_retried(srv: FaultServer) -> None:
    srv.script([Fault("rate_limit", retry_after_s=0.01, code="insufficient_quota", message="You exceeded your current quota")])
    with create_engine(srv.engine_config("openai")) as eng:
        (res,) = eng.chat_batch([ChatRequest.from_prompt("a", "hi")])
    assert not res.ok and res.attempts == 1 and srv.count() == 1
    assert "HTTP 429: You exceeded your current quota (not retried)" == res.error


def test_excessive_retry_after_fails_fast(srv: FaultServer) -> None:
    srv.script([Fault("rate_limit", retry_after_s=30)])  # > 10 x backoff_max_s (0.2 s here)
    with create_engine(srv.engine_config("openai")) as eng:
        (res,) = eng.chat_batch([ChatRequest.from_prompt("a", "hi")])
    assert not res.ok and res.attempts == 1 and "server asks to wait 30s" in res.error


def test_model_list_served(srv: FaultServer) -> None:
    import openai

    client = openai.OpenAI(base_url=srv.openai_base_url, api_key="x")
    assert [m.id for m in client.models.list()] == ["fault-model"]
    client.close()
