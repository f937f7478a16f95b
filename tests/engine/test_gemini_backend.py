"""The Gemini backend: what google-genai sends, schema flavours, roles, finish reasons, key handling."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from mentalchat.engine import ChatMessage, ChatRequest, EngineConfig, SamplingConfig, create_engine
from mentalchat.engine.gemini_backend import GeminiEngine
from mentalchat.testing.fault_server import FaultServer

SCHEMA = {
    "type": "object",
    "properties": {
        "empathy": {"type": "integer", "minimum": 1, "maximum": 10},
        "rationale": {"type": "string"},
    },
    "required": ["empathy", "rationale"],
}


@pytest.fixture
def srv():
    with FaultServer() as server:
        yield server


def test_registered() -> None:
    eng = create_engine(EngineConfig(backend="gemini", model="gemini-2.0-flash", base_url="http://127.0.0.1:9"))
    assert isinstance(eng, GeminiEngine) and eng.provider == "gemini"


def test_request_shape(srv: FaultServer) -> None:
    req = ChatRequest(
        id="c1",
        messages=[
            ChatMessage(role="system", content="You are a counsellor."),
            ChatMessage(role="user", content="I feel low."),
            ChatMessage(role="assistant", content="Tell me more."),
            ChatMessage(role="user", content="Work is hard."),
        ],
        sampling=SamplingConfig(temperature=0.3, top_p=0.8, max_tokens=32, seed=5, stop=["###"]),
    )
    with create_engine(srv.engine_config("gemini", model="gemini-2.0-flash")) as eng:
        (res,) = eng.chat_batch([req])
    assert res.ok and res.text == "echo: Work is hard."
    rec = srv.requests[0]
    # google-genai 3.x posts to /v1/... by default (GOOGLE_GENAI_API_VERSION=beta: /v1beta/...)
    assert re.fullmatch(r"/v1(beta)?/models/gemini-2\.0-flash:generateContent", rec.path)
    body = rec.body
    assert body["systemInstruction"]["parts"] == [{"text": "You are a counsellor."}]
    assert [(c["role"], c["parts"][0]["text"]) for c in body["contents"]] == [
        ("user", "I feel low."),
        ("model", "Tell me more."),
        ("user", "Work is hard."),
    ]
    gc = body["generationConfig"]
    assert (gc["temperature"], gc["topP"], gc["maxOutputTokens"], gc["seed"], gc["stopSequences"]) == (0.3, 0.8, 32, 5, ["###"])
    assert "responseMimeType" not in gc


@pytest.mark.parametrize(
    ("model", "field"),
    [("gemini-2.0-flash", "responseJsonSchema"), ("gemini-2.5-pro", "responseJsonSchema"), ("gemini-1.5-flash", "responseSchema")],
)
def test_json_schema_shapes(srv: FaultServer, model: str, field: str) -> None:
    req = ChatRequest.from_prompt("j", "Rate it.", json_schema=SCHEMA)
    with create_engine(srv.engine_config("gemini", model=model)) as eng:
        (res,) = eng.chat_batch([req])
    jsonschema.validate(json.loads(res.text), SCHEMA)
    gc = srv.requests[0].body["generationConfig"]
    assert gc["responseMimeType"] == "application/json"
    assert field in gc and ({"responseSchema", "responseJsonSchema"} - {field}).isdisjoint(gc)
    if field == "responseJsonSchema":
        assert gc[field] == SCHEMA  # sent verbatim
    else:  # Google's OpenAPI subset: upper-case types, same structure
        assert gc[field]["type"] == "OBJECT" and gc[field]["properties"]["empathy"]["type"] == "INTEGER"
        assert gc[field]["required"] == ["empathy", "rationale"]


def test_gemini_pro_gets_no_schema(srv: FaultServer) -> None:
    with create_engine(srv.engine_config("gemini", model="gemini-pro")) as eng:
        (res,) = eng.chat_batch([ChatRequest.from_prompt("j", "Rate it.", json_schema=SCHEMA)])
    assert res.ok and "responseMimeType" not in srv.requests[0].body.get("generationConfig", {})


def test_finish_reason_max_tokens(srv: FaultServer) -> None:
    req = ChatRequest.from_prompt("a", "one two three four", sampling=SamplingConfig(max_tokens=2))
    with create_engine(srv.engine_config("gemini")) as eng:
        (res,) = eng.chat_batch([req])
    assert res.ok and res.finish_reason == "length" and res.text == "echo: one"
    assert res.tokens_out == 2


def test_key_is_sent_in_header(srv: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_GEMINI_TEST_KEY", "AIza-the-right-key-0000")
    srv.api_key = "AIza-the-right-key-0000"
    with create_engine(srv.engine_config("gemini", api_key_env="MC_GEMINI_TEST_KEY")) as eng:
        assert eng.chat_batch([ChatRequest.from_prompt("a", "hi")])[0].ok
    monkeypatch.setenv("MC_GEMINI_TEST_KEY", "AIza-a-wrong-key-1111")
    with create_engine(srv.engine_config("gemini", api_key_env="MC_GEMINI_TEST_KEY")) as eng:
        (res,) = eng.chat_batch([ChatRequest.from_prompt("a", "hi")])
    assert not res.ok and "HTTP 401" in res.error and "wrong-key" not in res.error


def test_base_url_from_environment(srv: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", srv.base_url)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with create_engine(EngineConfig(backend="gemini", model="gemini-2.0-flash", http={"max_retries": 0})) as eng:
        assert eng.base_url == srv.base_url
        assert eng.chat_batch([ChatRequest.from_prompt("a", "hi")])[0].ok
    assert srv.count(protocol="gemini") == 1


def test_remote_endpoint_without_key_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="GEMINI_API_KEY"):
        create_engine(EngineConfig(backend="gemini", model="gemini-2.0-flash"))
