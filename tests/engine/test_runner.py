"""run_requests / run_on_dataset: real vLLM and transformers engines inside Ray Data actors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from mentalchat.engine import ChatRequest, ChatResult, EngineConfig, SamplingConfig, run_on_dataset, run_requests
from mentalchat.engine.config import TransformersOptions, VLLMOptions

SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["score"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def vllm_cfg(tiny_model: Path) -> EngineConfig:
    return EngineConfig(
        backend="vllm",
        model=str(tiny_model),
        sampling=SamplingConfig(temperature=0.0, max_tokens=16),
        vllm=VLLMOptions(batch_size=4, kv_cache_memory_bytes=64 * 2**20, max_model_len=256,
                         enable_lora=True, max_lora_rank=8),
    )


@pytest.fixture(scope="module")
def tf_cfg(tiny_model: Path) -> EngineConfig:
    return EngineConfig(backend="transformers", model=str(tiny_model),
                        sampling=SamplingConfig(temperature=0.0, max_tokens=8),
                        transformers=TransformersOptions(batch_size=4), vllm=VLLMOptions(batch_size=3))


def test_vllm_batch_through_ray_data(ray_cluster, vllm_cfg: EngineConfig, tiny_lora: Path) -> None:
    requests = [ChatRequest.from_prompt(f"r{i}", f"Question {i}: how can I calm down before a talk?",
                                        metadata={"n": i}) for i in range(10)]
    requests.append(ChatRequest.from_prompt("json", "Score it.", json_schema=SCHEMA))
    requests.append(requests[0].model_copy(update={"id": "lora", "lora": str(tiny_lora)}))
    results = run_requests(requests, vllm_cfg)  # Ray is up: the default goes through Ray Data
    assert [r.id for r in results] == [r.id for r in requests]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert [r.metadata for r in results[:10]] == [{"n": i} for i in range(10)]
    assert all(r.provider == "vllm" and r.tokens_out > 0 for r in results)
    jsonschema.validate(json.loads(results[10].text), SCHEMA)
    assert results[11].text != results[0].text  # the adapter reached the actor's engine


def test_run_on_dataset_keeps_columns_and_isolates_bad_rows(ray_cluster, tf_cfg: EngineConfig) -> None:
    """Any backend runs in the actor pool (transformers starts fastest); answers match in-process."""
    import ray.data

    requests = [ChatRequest.from_prompt(f"q{i}", f"I feel tired {i}") for i in range(5)]
    rows = [{"question_id": i, "prompt_req": r.model_dump_json()} for i, r in enumerate(requests)]
    rows.append({"question_id": 99, "prompt_req": "{not json"})
    too_long = ChatRequest.from_prompt("long", "worry " * 1200).model_dump_json()
    rows.append({"question_id": 100, "prompt_req": too_long})
    ds = run_on_dataset(ray.data.from_items(rows), tf_cfg, request_column="prompt_req", result_column="answer")
    out = sorted(ds.take_all(), key=lambda r: r["question_id"])
    assert [r["question_id"] for r in out] == [0, 1, 2, 3, 4, 99, 100]
    assert all(set(r) == {"question_id", "prompt_req", "answer"} for r in out)
    results = [ChatResult.model_validate_json(r["answer"]) for r in out]
    assert all(r.ok for r in results[:5]) and [r.id for r in results[:5]] == [f"q{i}" for i in range(5)]
    assert not results[5].ok and "prompt_req" in results[5].error
    assert not results[6].ok and "tokens" in results[6].error
    # Ray is up, but transformers defaults to in-process; the answers are the same
    local = run_requests(requests, tf_cfg, progress=True)
    assert [r.text for r in local] == [r.text for r in results[:5]]


def test_empty_input_starts_nothing(vllm_cfg: EngineConfig) -> None:
    assert run_requests([], vllm_cfg) == []


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MENTALCHAT_TEST_PROCESSOR"),
                    reason="~80 s on 2 cores; set MENTALCHAT_TEST_PROCESSOR=1 to run")
def test_ray_data_llm_processor_impl(ray_cluster, vllm_cfg: EngineConfig, tiny_lora: Path) -> None:
    """vllm.impl=processor: ray.data.llm's processor, same rows in, same result column out."""
    import ray.data

    cfg = vllm_cfg.model_copy(update={"vllm": vllm_cfg.vllm.model_copy(update={"impl": "processor"})})
    base = ChatRequest.from_prompt("q0", "How can I calm down before a talk?")
    rows = [{"model": "not-an-adapter", "request": base.model_dump_json()},
            {"model": "x", "request": ChatRequest.from_prompt("json", "Score it.", json_schema=SCHEMA).model_dump_json()},
            {"model": "x", "request": base.model_copy(update={"id": "lora", "lora": str(tiny_lora)}).model_dump_json()},
            {"model": "x", "request": "{not json"},
            {"model": "x", "request": ChatRequest.from_prompt("long", "worry " * 400).model_dump_json()}]
    out = run_on_dataset(ray.data.from_items(rows), cfg).take_all()
    by_id = {ChatResult.model_validate_json(r["result"]).id: (r, ChatResult.model_validate_json(r["result"]))
             for r in out}
    assert set(by_id) == {"q0", "json", "lora", "<invalid row>", "long"}
    assert by_id["q0"][0]["model"] == "not-an-adapter"  # the row's own "model" column survives
    assert by_id["q0"][1].ok and by_id["lora"][1].ok and by_id["lora"][1].text != by_id["q0"][1].text
    jsonschema.validate(json.loads(by_id["json"][1].text), SCHEMA)
    assert not by_id["<invalid row>"][1].ok and not by_id["long"][1].ok
    assert "maximum context length" in by_id["long"][1].error


def test_run_rounds_builds_each_round_from_the_last_on_ray_and_in_process(ray_cluster, tf_cfg: EngineConfig) -> None:
    """Round 2's prompts carry round 1's answers; a Ray pool per round and one in-process engine
    give the same texts (greedy), and the on_result callback sees every round."""
    from mentalchat.engine.runner import run_rounds
    from mentalchat.engine.types import ChatMessage

    first = [ChatRequest.from_prompt(f"c{i}", f"I keep worrying about exam {i}.") for i in range(3)]

    def follow_up(results: list[ChatResult]) -> list[ChatRequest]:
        if results[0].id.endswith("-2"):
            return []
        return [r.model_copy(update={"id": f"{r.id}-2", "messages": [
            *r.messages, ChatMessage(role="assistant", content=res.text or ""),
            ChatMessage(role="user", content="And then?")]})
            for r, res in zip(first, results, strict=True)]

    seen: dict[str, list[str]] = {"ray": [], "local": []}
    on_ray = run_rounds(first, tf_cfg, follow_up, use_ray=True, on_result=lambda r: seen["ray"].append(r.id))
    local = run_rounds(first, tf_cfg, follow_up, use_ray=False, on_result=lambda r: seen["local"].append(r.id))
    ids = ["c0", "c1", "c2", "c0-2", "c1-2", "c2-2"]
    assert [r.id for r in on_ray] == ids and [r.id for r in local] == ids
    assert all(r.ok for r in on_ray + local)
    assert [r.text for r in on_ray] == [r.text for r in local]
    assert sorted(seen["ray"]) == sorted(ids) and sorted(seen["local"]) == sorted(ids)
