"""Config loading: YAML + dotted overrides, strict validation with file and key in errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from mentalchat.config import (
    ConfigError,
    StrictModel,
    apply_overrides,
    config_hash,
    load_config_dict,
    load_stage_config,
    parse_override,
)
from mentalchat.engine import EngineConfig


class Lora(StrictModel):
    r: int = 8
    alpha: int = 16


class Stage(StrictModel):
    lr: float = 1e-4
    lora: Lora = Field(default_factory=Lora)
    models: list[str] = Field(default_factory=list)
    engines: dict[str, EngineConfig] = Field(default_factory=dict)


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_parse_override_types() -> None:
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=hello world") == (["a"], "hello world")
    assert parse_override("a=") == (["a"], "")
    with pytest.raises(ConfigError):
        parse_override("novalue")
    with pytest.raises(ConfigError):
        parse_override("a..b=1")


def test_overrides_absolute_and_section_relative() -> None:
    doc = {"finetune": {"lora": {"r": 8}}, "engines": {}}
    out = apply_overrides(doc, ["finetune.lora.r=16", "lora.alpha=32", "lr=0.5"], section="finetune")
    assert out["finetune"] == {"lora": {"r": 16, "alpha": 32}, "lr": 0.5}
    assert doc["finetune"]["lora"] == {"r": 8}  # input untouched


def test_override_into_scalar_is_an_error() -> None:
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_load_stage_config_with_shared_engines(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "engines:\n  j: {backend: openai, model: gpt-4o}\nfinetune:\n  lora: {r: 4}\n",
    )
    cfg = load_stage_config(Stage, path, ["lr=0.01", "models=[a, b]"], section="finetune")
    assert cfg.lora.r == 4 and cfg.lr == 0.01 and cfg.models == ["a", "b"]
    assert cfg.engines["j"].api_key_env == "OPENAI_API_KEY"


def test_unknown_key_error_names_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "finetune:\n  lora: {rank: 4}\n")
    with pytest.raises(ConfigError) as err:
        load_stage_config(Stage, path, section="finetune")
    assert str(path) in str(err.value) and "finetune.lora.rank" in str(err.value)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "a: 1\nb: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+"):
        load_config_dict(path)


def test_include_merges_deeply(tmp_path: Path) -> None:
    _write(tmp_path, "finetune:\n  lr: 0.1\n  lora: {r: 2, alpha: 4}\n", "base.yaml")
    path = _write(tmp_path, "include: base.yaml\nfinetune:\n  lora: {r: 3}\n")
    assert load_config_dict(path)["finetune"] == {"lr": 0.1, "lora": {"r": 3, "alpha": 4}}


def test_config_hash_changes_with_values() -> None:
    assert config_hash(Stage()) == config_hash(Stage())
    assert config_hash(Stage()) != config_hash(Stage(lr=0.2))


@pytest.mark.parametrize("name", ["smoke.yaml", "quickstart.yaml", "paper.yaml"])
def test_shipped_configs_have_valid_engines(repo_root: Path, name: str) -> None:
    doc = load_config_dict(repo_root / "configs" / name)
    assert doc["engines"], name
    for engine in doc["engines"].values():
        EngineConfig.model_validate(engine)


def test_the_crisis_detector_section_is_shared_by_the_dataset_and_judge_stages(repo_root: Path) -> None:
    from mentalchat.pipeline.run import load_pipeline

    plan = load_pipeline(repo_root / "configs/quickstart.yaml", ["crisis_detector.combine=all"])
    assert plan.configs["dataset"].crisis_detector.combine == "all"
    assert plan.configs["judge"].crisis_detector == plan.configs["dataset"].crisis_detector
