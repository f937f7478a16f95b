"""FinetuneConfig: the paper's recipe as defaults, the grid, step counts, config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.config import ConfigError, load_stage_config
from mentalchat.finetune.config import FinetuneConfig
from mentalchat.finetune.recipe import gradient_accumulation

PAPER_MODELS = [
    "meta-llama/Llama-2-7b-hf",
    "mistralai/Mistral-7B-v0.1",
    "mistralai/Mistral-7B-Instruct-v0.2",
    "mistralai/Mixtral-8x7B-v0.1",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "lmsys/vicuna-7b-v1.5",
    "HuggingFaceH4/zephyr-7b-alpha",
]


def test_paper_config_is_the_papers_recipe(repo_root: Path) -> None:
    cfg = load_stage_config(FinetuneConfig, repo_root / "configs/paper.yaml", section="finetune")
    assert [m.path for m in cfg.models] == PAPER_MODELS
    assert cfg.data_configs == ["synthetic", "interview", "combined"]
    q, lora, o, t = cfg.quantization, cfg.lora, cfg.optim, cfg.train
    assert (q.bits, q.quant_type, q.double_quant, q.compute_dtype) == (4, "nf4", True, "bfloat16")
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules) == (64, 16, 0.1, "all-linear")
    assert (o.optimizer, o.learning_rate, o.lr_scheduler) == ("paged_adamw_32bit", 2e-4, "constant_with_warmup")
    assert (o.warmup_ratio, o.max_grad_norm, o.weight_decay) == (0.03, 0.3, 0.0)
    assert (t.source_max_len, t.target_max_len, t.effective_batch_size) == (256, 512, 128)
    assert t.max_steps == {"synthetic": 480}
    assert cfg.scaling.use_gpu and cfg.scaling.accelerator_type == "A100"
    assert len(cfg.trials()) == 21
    # effective batch 128 holds for the configured workers
    accum = gradient_accumulation(cfg, cfg.scaling.num_workers)
    assert accum * t.micro_batch_size * cfg.scaling.num_workers == 128


def test_defaults_equal_the_recipe() -> None:
    cfg = FinetuneConfig(models=["m/a"])
    assert cfg.lora.r == 64 and cfg.optim.learning_rate == 2e-4 and cfg.train.effective_batch_size == 128
    assert cfg.quantization.quant_type == "nf4" and cfg.scaling.accelerator_type is None


@pytest.mark.parametrize("name", ["smoke", "quickstart"])
def test_small_configs_load(repo_root: Path, name: str) -> None:
    cfg = load_stage_config(FinetuneConfig, repo_root / f"configs/{name}.yaml", section="finetune")
    assert cfg.models and not cfg.scaling.use_gpu
    for spec in cfg.trials():
        gradient_accumulation(cfg.with_overrides(spec.overrides), cfg.scaling.num_workers)


def test_grid_crosses_models_configs_and_hyperparameters() -> None:
    cfg = FinetuneConfig(
        models=["org/a", {"path": "/models/b", "name": "b"}],
        data_configs=["synthetic", "combined"],
        grid={"lora.r": [8, 16], "optim.learning_rate": [1e-4, 2e-4]},
    )
    trials = cfg.trials()
    assert len(trials) == 2 * 2 * 4
    keys = [t.key for t in trials]
    assert len(set(keys)) == len(keys)
    assert "a__synthetic__r=8__learning_rate=0.0001" in keys
    point = trials[0].overrides
    tuned = cfg.with_overrides(point)
    assert tuned.lora.r == point["lora.r"] and tuned.optim.learning_rate == point["optim.learning_rate"]
    assert cfg.lora.r == 64  # the base config is untouched


def test_bad_grid_and_duplicates_are_refused() -> None:
    with pytest.raises(ValueError, match="grid.lora.rank: no such setting"):
        FinetuneConfig(models=["m/a"], grid={"lora.rank": [8]})
    with pytest.raises(ValueError, match="cannot be varied"):
        FinetuneConfig(models=["m/a"], grid={"models": [["m/b"]]})
    with pytest.raises(ValueError, match="duplicate names"):
        FinetuneConfig(models=["x/a", "y/a"])
    with pytest.raises(ValueError, match="unknown data configurations"):
        FinetuneConfig(models=["m/a"], train={"max_steps": {"synthetic": 4, "interviews": 4}})


def test_steps_scale_with_the_reference_configuration() -> None:
    cfg = FinetuneConfig(models=["m/a"])
    n = {"synthetic": 9000, "interview": 6000, "combined": 15000}
    assert cfg.steps_for("synthetic", n["synthetic"], n) == 480
    assert cfg.steps_for("interview", n["interview"], n) == 320
    assert cfg.steps_for("combined", n["combined"], n) == 800
    fixed = FinetuneConfig(models=["m/a"], train={"max_steps": 7})
    assert fixed.steps_for("interview", 10, n) == 7
    orphan = FinetuneConfig(models=["m/a"], train={"max_steps": {"interview": 5}, "steps_reference": None})
    with pytest.raises(ConfigError, match="no steps for 'synthetic'"):
        orphan.steps_for("synthetic", 10, n)


def test_batch_geometry_must_divide() -> None:
    cfg = FinetuneConfig(models=["m/a"], train={"effective_batch_size": 128, "micro_batch_size": 16})
    assert gradient_accumulation(cfg, 1) == 8 and gradient_accumulation(cfg, 4) == 2
    with pytest.raises(ConfigError, match="not a multiple"):
        gradient_accumulation(cfg, 3)


def test_result_hash_ignores_settings_that_do_not_change_adapters() -> None:
    cfg = FinetuneConfig(models=["m/a"])
    same = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"max_concurrent_trials": 2})})
    assert same.result_hash() == cfg.result_hash()
    assert cfg.with_overrides({"failure.max_failures": 5, "checkpoint.num_to_keep": 1}).result_hash() == cfg.result_hash()
    assert cfg.with_overrides({"lora.r": 8}).result_hash() != cfg.result_hash()
