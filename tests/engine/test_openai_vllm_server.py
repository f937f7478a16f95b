"""Our OpenAI backend against a real vLLM OpenAI-compatible server running the tiny model.

Checks what a mock cannot: vLLM accepts the exact request our backend builds (sampling fields,
``response_format`` json_schema with ``strict``), returns usage, and its guided decoding yields
strictly valid JSON for the schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from mentalchat.engine import ChatRequest, EngineConfig, SamplingConfig, create_engine

pytestmark = pytest.mark.slow

SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "label": {"type": "string", "enum": ["supportive", "neutral", "dismissive"]},
        "safe": {"type": "boolean"},
    },
    "required": ["score", "label", "safe"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def vllm_url(tiny_model: Path):
    from mentalchat.engine.vllm_server import VLLMServer

    with VLLMServer(str(tiny_model), served_model_name="tiny") as srv:
        yield srv.base_url


def _engine(url: str, **fields):
    http = {"timeout_s": 120, "max_concurrency": 4, "max_retries": 1, "backoff_base_s": 0.1}
    return create_engine(EngineConfig(backend="openai", model="tiny", base_url=url, http=http, **fields))


def test_plain_batch(vllm_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # local endpoint: no key needed
    sampling = SamplingConfig(temperature=0.0, max_tokens=16, seed=1)
    reqs = [ChatRequest.from_prompt(f"p{i}", f"How can I sleep better? ({i})", system="Be kind.", sampling=sampling) for i in range(4)]
    with _engine(vllm_url, cache_dir=str(tmp_path)) as eng:
        res = eng.chat_batch(reqs)
        assert all(r.ok and isinstance(r.text, str) for r in res), [r.error for r in res]
        assert all(r.tokens_in > 0 and 0 < r.tokens_out <= 16 for r in res)
        assert all(r.finish_reason in ("stop", "length") and r.cost_usd == 0.0 and r.attempts == 1 for r in res)
        again = eng.chat_batch(reqs)
    assert all(r.cached and r.attempts == 0 for r in again)
    assert [r.text for r in again] == [r.text for r in res]


def test_guided_json_is_strictly_valid(vllm_url: str) -> None:
    sampling = SamplingConfig(temperature=1.0, max_tokens=64, seed=3)
    reqs = [
        ChatRequest.from_prompt(f"j{i}", f"Rate answer {i} as JSON.", json_schema=SCHEMA, sampling=sampling)
        for i in range(6)
    ]
    with _engine(vllm_url) as eng:
        res = eng.chat_batch(reqs)
    assert all(r.ok for r in res), [r.error for r in res]
    for r in res:
        value = json.loads(r.text)  # strict: no repair, no extraction
        jsonschema.validate(value, SCHEMA)


def test_bad_request_is_not_retried(vllm_url: str) -> None:
    # A model name the server does not serve: vLLM answers 404, which must fail fast.
    with create_engine(EngineConfig(backend="openai", model="not-served", base_url=vllm_url, http={"max_retries": 3})) as eng:
        (res,) = eng.chat_batch([ChatRequest.from_prompt("x", "hi")])
    assert not res.ok and res.attempts == 1 and "HTTP 404" in res.error and "not retried" in res.error
