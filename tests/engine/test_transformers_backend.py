"""The "transformers" fallback backend on the tiny random Llama (real generate, real PEFT)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.engine import ChatRequest, EngineConfig, SamplingConfig, create_engine
from mentalchat.engine.config import TransformersOptions

GREEDY = SamplingConfig(temperature=0.0, max_tokens=16)


@pytest.fixture(scope="module")
def engine(tiny_model: Path):
    cfg = EngineConfig(
        backend="transformers", model=str(tiny_model), sampling=GREEDY,
        transformers=TransformersOptions(batch_size=2),
    )
    eng = create_engine(cfg)
    yield eng
    eng.close()


def _prompts() -> list[ChatRequest]:
    texts = ["Hi.", "I cannot sleep and my thoughts keep racing at night.", "Why do I feel so alone?",
             "My manager shouts at me every day and I dread going to work.", "Thanks."]
    return [ChatRequest.from_prompt(f"t{i}", t, metadata={"i": i}) for i, t in enumerate(texts)]


def test_answers_a_batch_like_one_at_a_time(engine) -> None:
    requests = _prompts()
    batched = engine.chat_batch(requests)  # batch_size=2: three left-padded generate calls
    assert [r.id for r in batched] == [r.id for r in requests]
    for i, r in enumerate(batched):
        assert r.ok, r.error
        assert r.provider == "transformers" and r.metadata == {"i": i}
        assert r.finish_reason in ("stop", "length")
        assert 1 <= r.tokens_out <= GREEDY.max_tokens and r.tokens_in > 0
    alone = [engine.chat_batch([req])[0] for req in requests]
    assert [r.text for r in alone] == [r.text for r in batched]  # padding does not leak into outputs
    assert not engine.supports_json_schema


def test_seeded_sampling_is_reproducible(engine) -> None:
    sampling = SamplingConfig(temperature=1.0, top_p=0.95, max_tokens=12, seed=3)
    req = ChatRequest.from_prompt("s", "Tell me something kind.", sampling=sampling)
    first, second = engine.chat_batch([req]), engine.chat_batch([req])
    assert first[0].text == second[0].text
    other = engine.chat_batch([req.model_copy(update={"sampling": sampling.model_copy(update={"seed": 4})})])
    assert other[0].text != first[0].text


def test_lora_adapter_per_request(engine, tiny_lora: Path) -> None:
    base = ChatRequest.from_prompt("b", "How do I cope with exam stress?")
    before = engine.chat_batch([base])[0].text
    results = engine.chat_batch([base, base.model_copy(update={"id": "l", "lora": str(tiny_lora)})])
    assert all(r.ok for r in results), [r.error for r in results]
    assert results[1].text != results[0].text
    assert results[0].text == before  # the base model is untouched once an adapter is loaded


def test_bad_requests_fail_alone(engine, tmp_path: Path) -> None:
    results = engine.chat_batch([
        ChatRequest.from_prompt("long", "sadness " * 1200),
        ChatRequest.from_prompt("ok", "hello"),
        ChatRequest.from_prompt("nolora", "hello", lora=str(tmp_path / "absent")),
    ])
    assert [r.id for r in results] == ["long", "ok", "nolora"]
    assert not results[0].ok and "limit" in results[0].error and results[0].finish_reason == "error"
    assert results[1].ok
    assert not results[2].ok and "adapter_config.json" in results[2].error
