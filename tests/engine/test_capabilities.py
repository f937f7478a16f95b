"""Model capabilities: the table, the request shapes, and downgrades against a server that refuses
what the real APIs refuse (the fault server's provider rules, written from the providers' docs
apart from the engine's table), through the real openai and google-genai clients."""

from __future__ import annotations

import pytest

from mentalchat.config import ConfigError
from mentalchat.core.rubric import judgment_json_schema
from mentalchat.engine.base import create_engine
from mentalchat.engine.capabilities import (
    CapabilityOverrides,
    RequestShape,
    capabilities_for,
    retirement_for,
    shape_messages,
)
from mentalchat.engine.gemini_backend import gemini_config
from mentalchat.engine.openai_backend import openai_params, refused_param
from mentalchat.engine.types import ChatRequest, SamplingConfig
from mentalchat.testing.fault_server import FaultServer, ProviderRules

STRONGEST = CapabilityOverrides(structured="json_schema", max_tokens_param="max_tokens", temperature=True,
                                seed=True, system_role=True)


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-not-a-secret")


def _req(i: int = 0) -> ChatRequest:
    return ChatRequest.from_prompt(f"r{i}", f"Rate answer {i}.", system="You grade counselling answers.",
                                   json_schema=judgment_json_schema(),
                                   sampling=SamplingConfig(temperature=0.0, max_tokens=300, seed=3))


@pytest.mark.parametrize(
    ("provider", "model", "structured", "max_param", "temperature"),
    [
        ("openai", "gpt-4-1106-preview", "json_object", "max_tokens", True),  # the paper's GPT-4 judge
        ("openai", "gpt-4", "text", "max_tokens", True),
        ("openai", "gpt-4o-2024-05-13", "json_object", "max_tokens", True),
        ("openai", "gpt-4o-2024-08-06", "json_schema", "max_tokens", True),
        ("openai", "gpt-4o-mini-2024-07-18", "json_schema", "max_tokens", True),
        ("openai", "o3-mini", "json_schema", "max_completion_tokens", False),
        ("openai", "gpt-6.2-sol", "json_schema", "max_completion_tokens", False),
        ("openai", "gpt-5-chat-latest", "json_schema", "max_tokens", True),
        ("openai", "Qwen/Qwen2.5-7B-Instruct", "json_schema", "max_tokens", True),  # a vLLM server
        ("gemini", "gemini-pro", "text", "max_tokens", True),  # the paper's Gemini judge
        ("gemini", "models/gemini-1.5-pro-002", "openapi_schema", "max_tokens", True),
        ("gemini", "gemini-3.8-flash", "json_schema", "max_tokens", True),
    ],
)
def test_table(provider: str, model: str, structured: str, max_param: str, temperature: bool) -> None:
    shape = capabilities_for(provider, model)
    assert (shape.structured, shape.max_tokens_param, shape.temperature) == (structured, max_param, temperature)


def test_overrides_win_field_by_field() -> None:
    shape = capabilities_for("openai", "gpt-4-1106-preview", CapabilityOverrides(structured="text"))
    assert shape.structured == "text" and shape.max_tokens_param == "max_tokens"


def test_downgrade_steps_end() -> None:
    shape, steps = RequestShape(), []
    while (step := shape.downgrade("response_format")) is not None:
        shape, change = step
        steps.append(str(change))
    assert steps == ["response_format: json_schema -> json_object", "response_format: json_object -> text"]
    assert RequestShape(temperature=False).downgrade("temperature") is None


def test_request_under_each_shape() -> None:
    req = _req()
    strict = openai_params("m", req, req.sampling, RequestShape())
    assert strict["response_format"]["type"] == "json_schema" and strict["max_tokens"] == 300
    mode = openai_params("m", req, req.sampling, RequestShape(structured="json_object"))
    assert mode["response_format"] == {"type": "json_object"}
    assert "JSON Schema" in mode["messages"][-1]["content"] and '"scores"' in mode["messages"][-1]["content"]
    text = openai_params("m", req, req.sampling, RequestShape(structured="text", temperature=False, seed=False,
                                                             max_tokens_param="max_completion_tokens"))
    assert "response_format" not in text and "temperature" not in text and "top_p" not in text
    assert "seed" not in text and text["max_completion_tokens"] == 300
    folded = shape_messages(req, RequestShape(system_role=False))
    assert [m.role for m in folded] == ["user"] and folded[0].content.startswith("You grade")
    g = gemini_config("gemini-1.5-pro", req, req.sampling, None, RequestShape(structured="openapi_schema"))
    assert g.response_schema is not None and g.response_json_schema is None
    g = gemini_config("gemini-pro", req, req.sampling, None)
    assert g.response_mime_type is None and g.response_json_schema is None


def test_refused_param_reads_the_providers_messages() -> None:
    assert refused_param("Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
                         "response_format", None) == "response_format"
    assert refused_param("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                         "'max_completion_tokens' instead.", "max_tokens", "unsupported_parameter") == "max_tokens"
    # an invalid schema is a bug to show, not a capability to give up
    assert refused_param("Invalid schema for response_format 'judgment': 'additionalProperties' is required",
                         "response_format", None) is None


@pytest.mark.parametrize(
    ("backend", "model", "expected"),
    [
        ("openai", "gpt-4-1106-preview", ["response_format: json_schema -> json_object"]),
        ("openai", "gpt-4", ["response_format: json_schema -> text"]),
        ("openai", "gpt-6.2-sol", ["max_tokens: max_tokens -> max_completion_tokens", "temperature: sent -> not sent"]),
        ("openai", "o1-mini", ["response_format: json_schema -> text", "max_tokens: max_tokens -> max_completion_tokens",
                               "temperature: sent -> not sent", "system_role: sent -> not sent"]),
        ("gemini", "gemini-pro", ["response_format: json_schema -> text"]),
        ("gemini", "gemini-1.5-flash", ["response_format: json_schema -> json_object"]),
    ],
)
def test_a_refused_parameter_downgrades_once_for_the_run(backend: str, model: str, expected: list[str]) -> None:
    """Started too strong on purpose: the real refusals bring the engine down to what the model takes,
    and calls after that are not refused again."""
    with FaultServer(rules=ProviderRules()) as srv:
        cfg = srv.engine_config(backend, model=model, capabilities=STRONGEST.model_dump(), http={"max_retries": 0})
        with create_engine(cfg) as engine:
            first = engine.chat_batch([_req(0)])[0]
            refused = srv.count(status=400)
            rest = engine.chat_batch([_req(i) for i in range(1, 6)])
            steps = list(engine.downgrades)
        assert first.ok, first.error
        assert first.adaptations == expected
        assert refused == len(steps) >= len(expected)  # one refusal per step (json_schema -> json_object -> text: 2)
        assert srv.count(status=400) == refused  # remembered: nothing refused after the first call
        assert all(r.ok and r.adaptations == expected for r in rest)
        assert '"scores"' in first.text  # the reply still follows the schema


@pytest.mark.parametrize(("backend", "model"), [("openai", "gpt-4-1106-preview"), ("gemini", "gemini-pro"),
                                                 ("openai", "gpt-6.2-sol"), ("gemini", "gemini-3.8-flash")])
def test_the_table_needs_no_downgrade(backend: str, model: str) -> None:
    with FaultServer(rules=ProviderRules()) as srv:
        with create_engine(srv.engine_config(backend, model=model, http={"max_retries": 0})) as engine:
            results = engine.chat_batch([_req(i) for i in range(4)])
        assert all(r.ok and not r.adaptations for r in results), [r.error for r in results]
        assert srv.count(status=400) == 0


def test_without_downgrades_the_strict_request_fails_like_on_main() -> None:
    """What the paper config met before: json_schema to gpt-4-1106-preview is a 400 on every item."""
    with FaultServer(rules=ProviderRules()) as srv:
        cfg = srv.engine_config("openai", model="gpt-4-1106-preview", http={"max_retries": 0},
                                capabilities={"structured": "json_schema"})
        with create_engine(cfg) as engine:
            engine._adapt = lambda err, sent: False  # type: ignore[method-assign]  # downgrades off
            results = engine.chat_batch([_req(i) for i in range(3)])
        assert all(r.error_kind == "http_4xx" and "json_schema" in (r.error or "") for r in results)


def test_unknown_price_with_a_budget_does_not_start() -> None:
    cfg_kw = {"backend": "openai", "model": "some-new-model", "base_url": "https://api.example.com/v1",
              "http": {"budget_usd": 5.0}}
    from mentalchat.engine.config import EngineConfig

    with pytest.raises(ConfigError, match="price_in_per_mtok"):
        create_engine(EngineConfig.model_validate(cfg_kw))
    priced = EngineConfig.model_validate({**cfg_kw, "price_in_per_mtok": 1.0, "price_out_per_mtok": 2.0})
    create_engine(priced).close()
    create_engine(EngineConfig.model_validate({**cfg_kw, "http": {}})).close()  # no budget: starts (with a warning)


def test_retirement_notice() -> None:
    notice = retirement_for("gemini", "gemini-pro")
    assert notice is not None and "gemini-3.8-flash" in notice.describe()
    assert retirement_for("openai", "gpt-6.2-sol") is None
