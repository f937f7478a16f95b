"""Model name → (base model, data configuration)."""

from __future__ import annotations

import pytest

from mentalchat.config import ConfigError, validate_section
from mentalchat.core.model_names import ModelMapConfig, ModelRule, paper_model_map
from mentalchat.stats.config import StatsConfig

PAPER = {
    "Llama-2-7b-hf": ("Llama-2-7b-hf", "base"),
    "llama2-7b-gpt-0113": ("Llama-2-7b-hf", "synthetic"),
    "finetune_meta-llama_Llama-2-7b-hf_paraphrase2_interview_mistral_instruct_500": ("Llama-2-7b-hf", "interview"),
    "finetune_meta-llama_Llama-2-7b-hf_gpt_interview_mistral_instruct_1260": ("Llama-2-7b-hf", "combined"),
    "Mixtral-8x7B-Instruct-v0.1-gpt-0104": ("Mixtral-8x7B-Instruct-v0.1", "synthetic"),
    "finetune_HuggingFaceH4_zephyr-7b-alpha_gpt_interview_mistral_instruct_1260": ("zephyr-7b-alpha", "combined"),
    "vicuna-7b-gpt-1018": ("vicuna-7b-v1.5", "synthetic"),
    "zephyr-7b-gpt-1025": ("zephyr-7b-alpha", "synthetic"),
    "ChatPsychiatrist": (None, "baseline"),
    "samantha-1.2-mistral-7b": (None, "baseline"),
    "Samantha-1.11-7b": (None, "baseline"),
}


@pytest.mark.parametrize(("name", "expected"), PAPER.items())
def test_paper_names(name: str, expected: tuple) -> None:
    entry = paper_model_map().lookup(name)
    assert entry is not None and (entry.base, entry.config) == expected


def test_unmapped_names_are_reported_not_guessed() -> None:
    mapped, unmapped = paper_model_map().map_names(["zephyr-7b-alpha", "my-new-model", "gpt-4o"])
    assert list(mapped) == ["zephyr-7b-alpha"]
    assert unmapped == ["gpt-4o", "my-new-model"]


def test_explicit_entries_win_and_config_validates() -> None:
    cfg = validate_section(StatsConfig, {"stats": {"model_map": {
        "models": {"my-new-model": {"base": "zephyr-7b-alpha", "config": "combined"}},
        "rules": [{"pattern": r"^(?P<base>.+)-syn$", "config": "synthetic"}],
    }}}, "stats")
    assert cfg.model_map.lookup("my-new-model").config == "combined"
    assert cfg.model_map.lookup("foo-syn").base == "foo"
    assert cfg.model_map.lookup("zephyr-7b-alpha").config == "base"  # paper defaults kept
    assert cfg.model_map.lookup("zephyr-7b-gpt-1025") is None  # rules replaced by the override
    with pytest.raises(ConfigError, match="named group"):
        validate_section(StatsConfig, {"stats": {"model_map": {"rules": [{"pattern": "x", "config": "c"}]}}},
                         "stats")
    with pytest.raises(ValueError, match="invalid regex"):
        ModelRule(pattern="(?P<base>", config="c")
    empty = ModelMapConfig(bases=[], baselines=[], rules=[], base_aliases={})
    assert empty.lookup("zephyr-7b-alpha") is None


@pytest.mark.shared
def test_default_map_covers_every_model_in_the_authors_files(shared_data) -> None:
    import json

    names = {json.loads(p.open().readline())["model"] for p in shared_data.glob("fastchat/model_judgment_*/*.jsonl")}
    mapped, unmapped = paper_model_map().map_names(names)
    assert len(names) == 31 and unmapped == []
    configs = [e.config for e in mapped.values()]
    assert {c: configs.count(c) for c in set(configs)} == {
        "base": 7, "synthetic": 7, "interview": 7, "combined": 7, "baseline": 3}
    assert len({e.base for e in mapped.values() if e.base}) == 7
