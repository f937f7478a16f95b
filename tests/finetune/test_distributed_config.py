"""DeepSpeed ZeRO and checkpoint storage settings, checked where they are built (no GPU, no network).

The real ZeRO runs belong to the GPU check; here: a ``deepspeed:`` config reaches the Trainer's
arguments with the batch geometry filled in, ZeRO-3 with 4-bit weights gets
``bnb_4bit_quant_storage`` equal to the compute (and model) dtype, as PEFT's ZeRO-3 + QLoRA recipe
requires, and ``storage_path`` (a shared folder or ``s3://``) is what Ray Train and Ray Tune get.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mentalchat.config import ConfigError
from mentalchat.finetune.config import FinetuneConfig
from mentalchat.finetune.recipe import build_sft_config, gradient_accumulation, model_load_kwargs, sft_config_kwargs
from mentalchat.finetune.tune import plan_experiment, train_run_config, tune_run_config
from mentalchat.testing.finetune_data import write_qa_pairs

ZERO3 = {"zero_optimization": {"stage": 3, "overlap_comm": True}, "bf16": {"enabled": "auto"},
         "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto"}


def _zero3_cfg(**extra: object) -> FinetuneConfig:
    return FinetuneConfig(
        models=["org/m"], deepspeed=ZERO3, scaling={"use_gpu": True, "num_workers": 4},
        quantization={"bits": 4, "compute_dtype": "bfloat16", "quant_storage": "bfloat16"},
        train={"effective_batch_size": 32, "micro_batch_size": 4}, **extra,
    )


def test_zero3_qlora_reaches_the_trainer_and_the_4bit_loader(tmp_path: Path) -> None:
    import torch

    cfg = _zero3_cfg()
    kw = sft_config_kwargs(cfg, output_dir=tmp_path, max_steps=10, world_size=4, on_gpu=True)
    ds = kw["deepspeed"]
    assert ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["overlap_comm"] is True
    # without it ZeRO-3 would save an empty adapter
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert ds["train_micro_batch_size_per_gpu"] == "auto"  # the Trainer fills it from the two below
    assert (kw["per_device_train_batch_size"], kw["gradient_accumulation_steps"]) == (4, 2)  # 4 x 2 x 4 = 32
    assert kw["bf16"] is True

    load = model_load_kwargs(cfg, on_gpu=True, device_index=0, use_deepspeed=True)
    q = load["quantization_config"]
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_quant_storage == q.bnb_4bit_compute_dtype == load["dtype"] == torch.bfloat16
    assert "device_map" not in load  # DeepSpeed places (and under ZeRO-3 partitions) the weights
    # plain DDP keeps its per-rank placement and the packed uint8 storage
    ddp = FinetuneConfig(models=["org/m"], scaling={"use_gpu": True})
    load = model_load_kwargs(ddp, on_gpu=True, device_index=1, use_deepspeed=False)
    assert load["device_map"] == {"": 1} and load["quantization_config"].bnb_4bit_quant_storage == torch.uint8
    assert sft_config_kwargs(ddp, output_dir=tmp_path, max_steps=10, world_size=1, on_gpu=True)["deepspeed"] is None


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_trainer_arguments_carry_the_zero3_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With deepspeed installed: the real arguments, "auto" values filled from our geometry."""
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")  # TrainingArguments sets it process-wide
    cfg = _zero3_cfg()
    try:
        args = build_sft_config(cfg, output_dir=tmp_path, max_steps=10, world_size=4, on_gpu=False)
        ds = args.hf_deepspeed_config
        assert ds.is_zero3() and is_deepspeed_zero3_enabled()  # from_pretrained will partition
        assert ds.config["train_micro_batch_size_per_gpu"] == 4
        assert ds.config["gradient_accumulation_steps"] == gradient_accumulation(cfg, 4) == 2
    finally:
        unset_hf_deepspeed_config()  # or later from_pretrained calls in this process think ZeRO-3 is on


def test_without_deepspeed_installed_the_error_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(ConfigError, match="deepspeed package is not installed"):
        build_sft_config(_zero3_cfg(), output_dir=tmp_path, max_steps=10, world_size=4, on_gpu=True)


def test_a_deepspeed_file_is_read_on_the_driver(tmp_path: Path) -> None:
    path = tmp_path / "zero2.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    cfg = FinetuneConfig(models=["org/m"], scaling={"use_gpu": True}, deepspeed=str(path))
    assert cfg.deepspeed == {"zero_optimization": {"stage": 2}} and cfg.zero_stage == 2
    # workers get the content (JSON dump), and the experiment's hash follows it
    assert FinetuneConfig.model_validate(cfg.model_dump(mode="json")).deepspeed == cfg.deepspeed
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    assert FinetuneConfig(models=["org/m"], scaling={"use_gpu": True}, deepspeed=str(path)).result_hash() \
        != cfg.result_hash()
    with pytest.raises(ValueError, match=r"cannot read the DeepSpeed config .*missing\.json"):
        FinetuneConfig(models=["org/m"], scaling={"use_gpu": True}, deepspeed=str(tmp_path / "missing.json"))


@pytest.mark.parametrize(("change", "message"), [
    ({"quantization": {"bits": 4, "compute_dtype": "bfloat16"}}, r"quant_storage to 'bfloat16' \(now 'uint8'\)"),
    ({"quantization": {"bits": 4, "compute_dtype": "auto", "quant_storage": "bfloat16"}}, r"not auto"),
    ({"quantization": {"bits": 8}}, r"cannot shard 8-bit"),
    ({"scaling": {"use_gpu": False}}, r"deepspeed needs scaling\.use_gpu"),
    ({"deepspeed": {**ZERO3, "train_batch_size": 64}}, r"deepspeed\.train_batch_size: leave it 'auto'"),
    ({"deepspeed": {"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": False}}},
     r"empty adapter"),
    ({"deepspeed": {"zero_optimization": {"stage": 4}}}, r"stage must be 0, 1, 2 or 3"),
])
def test_deepspeed_settings_that_cannot_work_are_refused(change: dict, message: str) -> None:
    doc = _zero3_cfg().model_dump(mode="json")
    doc.update(change)
    with pytest.raises(ValueError, match=message):
        FinetuneConfig.model_validate(doc)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qa_pairs(tmp_path_factory.mktemp("ft-storage") / "qa.parquet", n_synthetic=12, n_interview=0)


def _plan(tiny_model: Path, dataset: Path, out: Path, storage: str | None):
    cfg = FinetuneConfig(models=[str(tiny_model)], data_configs=["synthetic"], storage_path=storage,
                         train={"effective_batch_size": 4, "micro_batch_size": 2, "max_steps": 2})
    plan = plan_experiment(cfg, dataset, out)
    return cfg, plan


@pytest.mark.parametrize("kind", ["default", "shared", "s3"])
def test_storage_path_is_what_ray_train_and_tune_get(kind: str, tiny_model: Path, dataset: Path,
                                                     tmp_path: Path) -> None:
    storage = {"default": None, "shared": str(tmp_path / "nfs" / "ckpts"), "s3": "s3://my-bucket/mentalchat"}[kind]
    cfg, plan = _plan(tiny_model, dataset, tmp_path / "out", storage)
    want = {"default": str(tmp_path / "out" / "ray_results"), "shared": storage, "s3": storage}[kind]
    assert plan.storage_path == want
    assert plan.train_storage == f"{want}/{plan.name}-train"
    train = train_run_config(cfg, name="trial-a", storage_path=plan.train_storage, worker_env={"A": "1"})
    tuned = tune_run_config(plan)
    assert (train.storage_path, train.name, tuned.storage_path, tuned.name) == (
        plan.train_storage, "trial-a", want, plan.name)
    assert train.storage_filesystem is None and tuned.storage_filesystem is None  # Ray opens the URI itself
    assert train.failure_config.max_failures == cfg.failure.max_failures
    assert train.checkpoint_config.num_to_keep == cfg.checkpoint.num_to_keep
    assert train.worker_runtime_env == {"env_vars": {"A": "1"}}
    assert not (tmp_path / "out").exists() and not (tmp_path / "nfs").exists()  # planning writes nothing


def test_relative_storage_is_made_absolute_and_unknown_schemes_are_refused(
        tiny_model: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _, plan = _plan(tiny_model, dataset, tmp_path / "out", "shared/ckpts")
    assert plan.storage_path == str(tmp_path / "shared" / "ckpts")  # the driver's cwd, not a worker's
    with pytest.raises(ValueError, match=r"unknown storage scheme 's4'"):
        FinetuneConfig(models=["org/m"], storage_path="s4://bucket/x")
