"""Judge config: prompt specs, labels, engines, the configs shipped in configs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.config import ConfigError, load_stage_config
from mentalchat.judge.config import JudgeConfig, PromptSpec


def test_prompt_specs() -> None:
    assert PromptSpec.model_validate("mentalchat-v1").label == "mentalchat-v1"
    fc = PromptSpec(fastchat_file="p.jsonl", fastchat_name="single-mental-v1")
    assert fc.is_fastchat and fc.label == "fastchat:single-mental-v1"
    for bad in ({"fastchat_file": "p.jsonl"}, {}, {"version": "v", "fastchat_file": "f", "fastchat_name": "n"}):
        with pytest.raises(ValueError):
            PromptSpec.model_validate(bad)


def test_labels_and_engines() -> None:
    cfg = JudgeConfig.model_validate({
        "judges": [{"engine": "a"}, {"engine": "a", "name": "a-again"}],
        "engines": {"a": {"backend": "openai", "model": "gpt-4o"}},
    })
    assert [cfg.judge_label(j) for j in cfg.judges] == ["gpt-4o", "a-again"]
    with pytest.raises(ValueError, match="unique"):
        JudgeConfig.model_validate({"judges": [{"engine": "a"}, {"engine": "a"}],
                                    "engines": {"a": {"backend": "openai", "model": "m"}}})
    with pytest.raises(ConfigError, match="not declared"):
        JudgeConfig.model_validate({"judges": [{"engine": "zz"}]}).engine_for(JudgeConfig.model_validate(
            {"judges": [{"engine": "zz"}]}).judges[0])
    with pytest.raises(ValueError):
        JudgeConfig.model_validate({"judges": [], "budget_usd": -1})


@pytest.mark.parametrize("name", ["smoke", "quickstart", "paper", "judges-current"])
def test_shipped_configs(repo_root: Path, name: str) -> None:
    cfg = load_stage_config(JudgeConfig, repo_root / "configs" / f"{name}.yaml", section="judge")
    assert cfg.judges and all(cfg.engine_for(j) for j in cfg.judges)
    if name == "paper":
        models = [cfg.engine_for(j).model for j in cfg.judges]
        assert models == ["gpt-4-1106-preview", "gemini-pro"]
        assert [cfg.engine_for(j).backend for j in cfg.judges] == ["openai", "gemini"]
    if name == "quickstart":
        (judge,) = cfg.judges
        assert judge.serve == "local:smollm2-135m-instruct" and cfg.engine_for(judge).backend == "openai"
    # The override that points a judge at a running server.
    over = load_stage_config(JudgeConfig, repo_root / "configs" / f"{name}.yaml",
                             [f"engines.{cfg.judges[0].engine}.base_url=http://127.0.0.1:9/v1"], section="judge")
    assert over.engine_for(over.judges[0]).base_url == "http://127.0.0.1:9/v1"
