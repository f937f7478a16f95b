"""Dataset config: the shipped configs, topics and the locality guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.config import ConfigError, load_stage_config
from mentalchat.dataset.config import REMOTE_OVERRIDE, DatasetConfig, engine_is_local
from mentalchat.dataset.synthetic import load_topics, plan_slots
from mentalchat.engine.config import EngineConfig


@pytest.mark.parametrize("name", ["smoke", "quickstart", "paper"])
def test_shipped_configs_load(repo_root: Path, name: str) -> None:
    cfg = load_stage_config(DatasetConfig, repo_root / f"configs/{name}.yaml", [], section="dataset")
    assert engine_is_local(cfg.paraphrase_engine_cfg())
    assert cfg.synthetic.enabled


def test_paper_settings(repo_root: Path) -> None:
    cfg = load_stage_config(DatasetConfig, repo_root / "configs/paper.yaml", [], section="dataset")
    para = cfg.paraphrase_engine_cfg()
    assert para.backend == "vllm" and para.model == "mistralai/Mistral-7B-Instruct-v0.2"
    syn = cfg.engine(cfg.synthetic.engine)
    assert syn.model == "gpt-3.5-turbo-16k"
    assert cfg.interview.min_words == 40 and cfg.synthetic.topics == "counselchat"


@pytest.mark.parametrize("backend,url,local", [
    ("vllm", None, True), ("transformers", None, True),
    ("openai", "http://127.0.0.1:8000/v1", True), ("openai", "http://127.9.9.9:1/v1", True),
    ("openai", "http://localhost:8000/v1", True), ("openai", "http://[::1]:8000/v1", True),
    ("openai", "http://vllm.llm.svc.cluster.local:8000/v1", True),
    ("openai", None, False), ("openai", "https://api.openai.com/v1", False),
    ("openai", "http://10.0.0.5:8000/v1", False), ("gemini", None, False),
    ("openai", "http://localhost.evil.example/v1", False),
])
def test_engine_locality(backend: str, url: str | None, local: bool) -> None:
    assert engine_is_local(EngineConfig(backend=backend, model="m", base_url=url)) is local


def test_remote_paraphrase_engine_is_refused_without_the_loud_override() -> None:
    engines = {"remote": EngineConfig(backend="openai", model="gpt-4o", base_url="https://api.example.com/v1")}
    cfg = DatasetConfig(engines=engines, interview={"paraphrase_engine": "remote"})
    with pytest.raises(ConfigError, match=REMOTE_OVERRIDE):
        cfg.paraphrase_engine_cfg()
    cfg = DatasetConfig(engines=engines, interview={"paraphrase_engine": "remote", REMOTE_OVERRIDE: True})
    assert cfg.paraphrase_engine_cfg().model == "gpt-4o"


def test_unknown_engine_names_are_config_errors() -> None:
    with pytest.raises(ValueError, match="not declared"):
        DatasetConfig(interview={"paraphrase_engine": "nope"})


def test_counselchat_topics(shared_data: Path) -> None:
    topics = load_topics("counselchat")
    assert len(topics) == 33 and abs(sum(topics.values()) - 1) < 1e-9
    for line in (shared_data / "synthetic/topics_counselchat_with_distr.txt").read_text().splitlines():
        name, p = line.rsplit(",", 1)
        assert topics[name.strip()] == pytest.approx(float(p), rel=1e-9)


def test_slots_follow_the_weights() -> None:
    topics = load_topics("counselchat")
    slots = plan_slots(topics, 20000, seed=0)
    for t, p in topics.items():
        assert abs(slots.count(t) / 20000 - p) < 0.01, t
    assert plan_slots(topics, 50, seed=3) == plan_slots(topics, 50, seed=3)


def test_bad_topic_files(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("topics: [a, b]\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_topics(str(f))
    with pytest.raises(ConfigError, match="non-negative"):
        load_topics({"a": -1.0, "b": 2.0})


def test_crisis_model_layer_must_be_local_and_is_shared_from_the_top_level(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "engines:\n  api: {backend: openai, model: gpt-4o-mini}\n  local: {backend: vllm, model: m}\n"
        "crisis_detector: {layers: [rules, model], model: {engine: api}}\ndataset: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="crisis_detector.model.engine is not local"):
        load_stage_config(DatasetConfig, cfg, section="dataset")
    loaded = load_stage_config(DatasetConfig, cfg, ["crisis_detector.model.engine=local"], section="dataset")
    assert loaded.crisis_detector.layers == ["rules", "model"]
    assert loaded.crisis_detector.resolve(loaded.engines).model.engine.backend == "vllm"
