"""The crisis detector: the model layer through a real vLLM engine with guided JSON, layer combination, parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.config import ConfigError
from mentalchat.engine.config import EngineConfig, VLLMOptions
from mentalchat.engine.types import SamplingConfig
from mentalchat.safety import CrisisDetector, CrisisDetectorConfig, CrisisModelConfig
from mentalchat.safety.model_layer import parse_answer_verdict, parse_message_verdict

MESSAGES = [
    "everyone would be better off if i was gone, i've been giving my things away",
    "this commute is killing me, any tips for podcasts?",
    "my husband hurts me when he drinks and i'm scared to go home",
    "we meet in Room 112 on Thursday, it costs $1,000",
]


@pytest.fixture(scope="module")
def model_cfg(tiny_model: Path) -> CrisisModelConfig:
    engine = EngineConfig(
        backend="vllm", model=str(tiny_model), name="tiny-crisis",
        sampling=SamplingConfig(temperature=0.0, max_tokens=64),
        vllm=VLLMOptions(kv_cache_memory_bytes=64 * 2**20, max_model_len=1024),
    )
    return CrisisModelConfig(engine=engine, max_tokens=48, use_ray=False)


def test_model_layer_guided_json_gives_a_verdict_for_every_message(model_cfg: CrisisModelConfig) -> None:
    """A random tiny model can only write valid verdicts under guided decoding: none is unreadable."""
    det = CrisisDetector(CrisisDetectorConfig(layers=["rules", "model"], combine="any", model=model_cfg))
    dets = det.detect(MESSAGES)
    assert [sorted(d.layers) for d in dets] == [["model", "rules"]] * len(MESSAGES)
    assert all(d.layers["model"] is not None for d in dets), [d.errors for d in dets]
    assert [d.layers["rules"] for d in dets] == [True, False, True, False]
    for d in dets:
        assert d.flag == (d.layers["rules"] or d.layers["model"])  # any: one layer is enough
        assert set(d.categories) >= set(d.layer_categories["rules"])
    strict = CrisisDetector(CrisisDetectorConfig(layers=["rules", "model"], combine="all", model=model_cfg))
    for d in strict.detect(MESSAGES):
        assert d.flag == (d.layers["rules"] and d.layers["model"])
    checks = det.check_answers(["Please call 988 right now.", "Try a warm bath."], MESSAGES[:2])
    assert all(c.layers["model"] is not None for c in checks)
    assert [c.layers["rules"] for c in checks] == [True, False]
    assert all(c.escalated == (c.layers["rules"] or c.layers["model"]) for c in checks)


def test_parsing_odd_replies() -> None:
    v = parse_message_verdict('Sure! {"at_risk": true, "categories": ["self_harm", "sadness"]} hope that helps')
    assert v.flag is True and v.categories == ("self_harm",)
    assert parse_message_verdict('{"at_risk": "no", "categories": []}').flag is False
    assert parse_message_verdict('{"at_risk": false, "categories": ["abuse"]}').flag is True  # a category is a flag
    assert parse_message_verdict("I cannot help with that").flag is None
    assert parse_message_verdict(None).error
    assert parse_answer_verdict('{"escalates": true}').flag is True
    assert parse_answer_verdict('{"escalates": 1}').flag is None


def test_unreadable_model_verdicts_fail_safe() -> None:
    """An unreadable message verdict flags (fail_open); an unreadable escalation verdict never passes an answer."""
    cfg = CrisisDetectorConfig(layers=["rules", "model"], model=CrisisModelConfig(
        engine=EngineConfig(backend="openai", model="m", base_url="http://127.0.0.1:9/v1",
                            http={"max_retries": 0, "timeout_s": 2})))
    det = CrisisDetector(cfg)
    d = det.detect(["we meet in Room 112"])[0]
    assert d.layers == {"rules": False, "model": None} and d.flag and d.errors
    c = det.check_answers(["Try a warm bath."], ["I want to die"])[0]
    assert c.layers["model"] is None and not c.escalated


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="crisis.model"):
        CrisisDetectorConfig(layers=["rules", "model"])
    cfg = CrisisDetectorConfig(layers=["model"], model=CrisisModelConfig(engine="judge-llm"))
    with pytest.raises(ConfigError, match="'judge-llm' is not declared under engines"):
        cfg.resolve({})
