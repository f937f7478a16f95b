"""The "vllm" backend against a real in-process vLLM CPU engine on the tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from mentalchat.engine import ChatRequest, EngineConfig, SamplingConfig, create_engine
from mentalchat.engine.config import VLLMOptions
from mentalchat.models.kit import build_random_lora

GREEDY = SamplingConfig(temperature=0.0, max_tokens=24)

SCORE_SCHEMA = {
    "type": "object",
    "properties": {
        "metric": {"type": "string", "enum": ["Empathy & Validation", "Active Listening"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "reason": {"type": "string", "maxLength": 40},
        "flags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
    },
    "required": ["metric", "score", "reason", "flags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def engine(tiny_model: Path):
    cfg = EngineConfig(
        backend="vllm",
        model=str(tiny_model),
        name="tiny",
        sampling=GREEDY,
        vllm=VLLMOptions(
            kv_cache_memory_bytes=64 * 2**20,
            max_model_len=256,
            enable_lora=True,
            max_lora_rank=8,
            max_loras=2,
        ),
    )
    eng = create_engine(cfg)
    yield eng
    eng.close()


def test_batch_of_chat_requests(engine) -> None:
    requests = [
        ChatRequest.from_prompt(f"q{i}", f"I have felt low for {i + 1} weeks. What can I do?",
                                system="You are a supportive counsellor.", metadata={"row": i})
        for i in range(6)
    ]
    results = engine.chat_batch(requests)
    assert [r.id for r in results] == [f"q{i}" for i in range(6)]
    for i, r in enumerate(results):
        assert r.ok, r.error
        assert r.provider == "vllm" and r.model == "tiny" and r.cost_usd == 0.0
        assert r.metadata == {"row": i}
        assert r.finish_reason in ("stop", "length")
        assert 1 <= r.tokens_out <= GREEDY.max_tokens
        assert r.latency_s > 0
    # tokens_in counts exactly the chat-template rendering of the prompt
    rendered = engine.tokenizer.apply_chat_template(
        [m.model_dump() for m in requests[0].messages], tokenize=False, add_generation_prompt=True
    )
    assert results[0].tokens_in == len(engine.tokenizer(rendered, add_special_tokens=False)["input_ids"])
    # greedy decoding is reproducible batch to batch
    again = engine.chat_batch(requests[:2])
    assert [r.text for r in again] == [r.text for r in results[:2]]


def test_guided_json_is_strictly_valid(engine) -> None:
    sampling = SamplingConfig(temperature=1.0, max_tokens=120, seed=7)
    requests = [
        ChatRequest.from_prompt(f"j{i}", "Rate this answer as JSON.", json_schema=SCORE_SCHEMA,
                                sampling=sampling.model_copy(update={"seed": i}))
        for i in range(5)
    ]
    results = engine.chat_batch(requests)
    assert len(results) == 5
    for r in results:
        assert r.ok, r.error
        assert r.finish_reason == "stop", (r.finish_reason, r.text)
        doc = json.loads(r.text)  # strict: the whole text, nothing around it
        jsonschema.validate(doc, SCORE_SCHEMA)


def test_lora_request_changes_output(engine, tiny_lora: Path) -> None:
    base = ChatRequest.from_prompt("base", "How do I cope with exam stress?")
    tuned = base.model_copy(update={"id": "tuned", "lora": str(tiny_lora)})
    results = engine.chat_batch([base, tuned, tuned.model_copy(update={"id": "tuned2"})])
    assert all(r.ok for r in results), [r.error for r in results]
    assert results[0].text != results[1].text
    assert results[1].text == results[2].text
    # the adapter keeps one id however often it is requested
    engine.chat_batch([tuned])
    assert list(engine._lora_ids.values()) == [1]


def test_on_cpu_a_mixed_batch_is_generated_one_adapter_per_call(engine, tiny_lora: Path) -> None:
    base = ChatRequest.from_prompt("b0", "How do I sleep better?")
    tuned = base.model_copy(update={"id": "t0", "lora": str(tiny_lora)})
    mixed = [base, tuned, base.model_copy(update={"id": "b1"}), tuned.model_copy(update={"id": "t1"})]
    expected = {r.id: r.text for r in engine.chat_batch(mixed[:1])} | {r.id: r.text for r in engine.chat_batch(mixed[1:2])}
    calls: list[list[int | None]] = []
    real = engine.llm.generate

    def recording(prompts, params, **kw):  # the real engine, with its calls written down
        loras = kw.get("lora_request")
        calls.append([lr.lora_int_id if lr is not None else None for lr in loras] if loras else [None] * len(prompts))
        return real(prompts, params, **kw)

    engine.llm.generate = recording
    try:
        results = engine.chat_batch(mixed)
    finally:
        del engine.llm.generate
    assert engine.group_by_adapter
    assert [r.id for r in results] == ["b0", "t0", "b1", "t1"]  # the caller's order
    assert sorted(calls, key=str) == [[1, 1], [None, None]]
    assert results[0].text == results[2].text == expected["b0"]
    assert results[1].text == results[3].text == expected["t0"]


def test_bad_requests_fail_alone(engine, tiny_model: Path, tmp_path: Path) -> None:
    too_long = ChatRequest.from_prompt("long", "sadness " * 400)
    missing_adapter = ChatRequest.from_prompt("nolora", "hello", lora=str(tmp_path / "absent"))
    # rank 16 > max_lora_rank 8: inside the engine this would hang it, so it must be refused first
    wide = build_random_lora(tiny_model, tmp_path / "wide", r=16)
    too_wide = ChatRequest.from_prompt("wide", "hello", lora=str(wide))
    good = ChatRequest.from_prompt("good", "hello")
    results = engine.chat_batch([too_long, good, missing_adapter, too_wide])
    assert [r.id for r in results] == ["long", "good", "nolora", "wide"]
    assert not results[0].ok and "max_model_len" in results[0].error
    assert results[0].finish_reason == "error"
    assert results[1].ok
    assert not results[2].ok and "adapter_config.json" in results[2].error
    assert not results[3].ok and "max_lora_rank" in results[3].error
    assert engine.chat_batch([good])[0].text == results[1].text  # the engine is still healthy


def test_seeded_requests_survive_split_prefills(tiny_model: Path) -> None:
    """vLLM 0.32's CPU runner rewinds a seeded request's generator when its prefill is split over
    steps, which CPU torch generators cannot do; the backend must not let that kill the batch."""
    cfg = EngineConfig(
        backend="vllm",
        model=str(tiny_model),
        name="tiny-seeded",
        sampling=SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=8, seed=3),
        # a step budget smaller than one prompt forces every prefill to be split
        vllm=VLLMOptions(kv_cache_memory_bytes=64 * 2**20, max_model_len=256,
                         engine_kwargs={"max_num_batched_tokens": 32, "max_num_seqs": 4}),
    )
    requests = [ChatRequest.from_prompt(f"s{i}", f"Since week {i} I worry about my exams and sleep badly. " * 4)
                for i in range(6)]
    texts = []
    for _ in range(2):  # two engines with one seed: the run repeats
        eng = create_engine(cfg)
        try:
            results = eng.chat_batch(requests)
        finally:
            eng.close()
        assert all(r.ok for r in results), [r.error for r in results]
        assert all(r.tokens_in > 32 for r in results)
        texts.append([r.text for r in results])
    assert texts[0] == texts[1]
    assert len(set(texts[0])) > 1  # sampled, not one degenerate answer
