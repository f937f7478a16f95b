"""Stage 2 settings: which base models and data configurations to tune, with which QLoRA recipe.

The defaults are the MentalChat16K / QLoRA recipe (4-bit NF4 with double quantisation and bf16
compute; LoRA r 64, alpha 16, dropout 0.1 on every linear layer; paged AdamW 32-bit at a constant
2e-4 after a 3% warm-up; max grad norm 0.3; source ≤ 256 and target ≤ 512 tokens; effective batch
128; 480 steps on the synthetic data). ``configs/paper.yaml`` spells them out; the smoke and
quickstart configs shrink them. Everything a trial needs travels as this model's JSON dump, so a Ray
worker rebuilds exactly the driver's settings.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mentalchat.config import ConfigError, StrictModel
from mentalchat.core.decontamination import DecontaminationConfig

__all__ = [
    "DATA_CONFIGS",
    "SINGLE_TURN_CONFIGS",
    "CheckpointSettings",
    "DataConfigName",
    "FailureSettings",
    "FinetuneConfig",
    "LoggingSettings",
    "LoraSettings",
    "MergeSettings",
    "ModelSpec",
    "OptimSettings",
    "QuantizationSettings",
    "ScalingSettings",
    "TrainSettings",
    "TrialSpec",
    "TuneSettings",
]

# Schemes pyarrow (and so Ray Train's storage) opens; anything else is a typo or an unsupported store.
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file")
# DeepSpeed keys that train.micro_batch_size / effective_batch_size already decide (HF fills "auto").
DEEPSPEED_GEOMETRY_KEYS = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size")

DataConfigName = Literal["synthetic", "interview", "combined", "multiturn"]
DATA_CONFIGS: tuple[str, ...] = ("synthetic", "interview", "combined", "multiturn")
# The default grid: the paper's three single-turn configurations (multiturn needs a dialogues table).
SINGLE_TURN_CONFIGS: tuple[str, ...] = ("synthetic", "interview", "combined")
PromptFormat = Literal["auto", "chat_template", "instruction"]


class ModelSpec(StrictModel):
    """A base model: hub id, local folder, ``s3://`` folder or ``local:<kit model>``."""

    path: str
    name: str | None = Field(None, description="label in the manifest; defaults to the path's last part")
    prompt_format: PromptFormat = Field(
        "auto", description="auto: the tokenizer's chat template when it has one, else the instruction format"
    )

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        tail = self.path.rstrip("/").split("?")[0].split("/")[-1]
        return tail.removeprefix("local:") or self.path


class QuantizationSettings(StrictModel):
    """bitsandbytes loading of the frozen base (QLoRA: 4-bit NF4, double quantisation)."""

    bits: Literal[4, 8, 16] = Field(4, description="4: QLoRA; 8: LLM.int8; 16: plain LoRA (no bitsandbytes)")
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="auto: bfloat16 on GPU, float32 on CPU (CPUs here lack fast bf16)"
    )
    quant_storage: Literal["uint8", "bfloat16", "float16", "float32"] = Field(
        "uint8", description="set to the compute dtype for DeepSpeed ZeRO-3 / FSDP sharding of 4-bit weights"
    )


class LoraSettings(StrictModel):
    r: int = Field(64, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: str | list[str] = Field("all-linear", description="all-linear: every linear layer but the head")
    bias: Literal["none", "all", "lora_only"] = "none"


class OptimSettings(StrictModel):
    optimizer: str = Field("paged_adamw_32bit", description="a transformers `optim` name")
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: str = Field(
        "constant_with_warmup",
        description="constant after warm-up (transformers' plain 'constant' would ignore the warm-up)",
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float = Field(0.3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_beta2: float = Field(0.999, gt=0, lt=1)


class TrainSettings(StrictModel):
    """Sequence lengths, batch geometry, step counts and the speed knobs."""

    source_max_len: int = Field(256, ge=8, description="prompt tokens kept (the user text is cut, not the template)")
    target_max_len: int = Field(512, ge=2, description="answer tokens kept, end-of-turn token included")
    effective_batch_size: int = Field(128, ge=1, description="sequences per optimizer step over all workers")
    micro_batch_size: int = Field(16, ge=1, description="sequences per forward pass on one worker")
    max_steps: int | dict[str, int] = Field(
        default_factory=lambda: {"synthetic": 480},
        description="optimizer steps, one number or per data configuration",
    )
    steps_reference: str | None = Field(
        "synthetic",
        description=(
            "a data configuration missing from max_steps trains for as many epochs as this one "
            "(steps scaled by training-set size)"
        ),
    )
    packing: bool = Field(False, description="best-fit packing into max_length bins, padding-free attention")
    sampling: Literal["random", "group_by_length", "batch_rebalance"] = Field(
        "group_by_length", description="train sampler when not packing: similar lengths share a batch"
    )
    gradient_checkpointing: bool = True
    attn_implementation: str | None = Field(
        "sdpa",
        description=(
            "sdpa, eager, flash_attention_2, mentalchat_varlen (PyTorch's varlen flash kernel for packed "
            "batches, no flash-attn wheel needed), ... (None: the model's default)"
        ),
    )
    eval_fraction: float = Field(0.05, gt=0, lt=1, description="held-out share of each data configuration")
    eval_max_rows: int = Field(512, ge=1)
    eval_steps: int | None = Field(None, ge=1, description="evaluate every N steps; None: at each checkpoint")
    save_steps: int | None = Field(None, ge=1, description="checkpoint every N steps; None: ~10 per run")
    logging_steps: int = Field(10, ge=1)
    torch_compile: bool = False
    dataloader_num_workers: int = Field(0, ge=0)
    seed: int = 0

    @property
    def max_length(self) -> int:
        return self.source_max_len + self.target_max_len

    @model_validator(mode="after")
    def _check(self) -> TrainSettings:
        if self.attn_implementation == "mentalchat_varlen" and not self.packing:
            raise ValueError("attn_implementation mentalchat_varlen needs packing: true (padding-free batches)")
        if self.save_steps and self.eval_steps and self.save_steps % self.eval_steps:
            raise ValueError("save_steps must be a multiple of eval_steps (checkpoints are ranked by eval loss)")
        return self


class ScalingSettings(StrictModel):
    """Ray Train ``ScalingConfig`` of one trial."""

    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    gpus_per_worker: float = Field(1.0, gt=0)
    cpus_per_worker: float = Field(1.0, gt=0)
    accelerator_type: str | None = Field(None, description="e.g. A100 (needs a cluster with that resource)")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"

    def resources_per_worker(self) -> dict[str, float]:
        res = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            res["GPU"] = self.gpus_per_worker
        return res


class CheckpointSettings(StrictModel):
    num_to_keep: int = Field(2, ge=1, description="best k checkpoints by eval loss (the latest is always kept)")
    score_attribute: str = "eval_loss"
    score_order: Literal["min", "max"] = "min"


class FailureSettings(StrictModel):
    max_failures: int = Field(2, ge=-1, description="worker-group restarts per trial (Ray Train FailureConfig)")
    trial_max_failures: int = Field(0, ge=-1, description="whole-trial retries (Ray Tune FailureConfig)")


class LoggingSettings(StrictModel):
    """Experiment tracking (finetune/tracking.py): one run per finished trial, logged by the driver."""

    mlflow: bool = False
    mlflow_tracking_uri: str | None = Field(None, description="e.g. sqlite:///mlflow.db, file:./mlruns, http://host:5000; "
                                                              "None: $MLFLOW_TRACKING_URI or ./mlruns")
    mlflow_experiment: str = "mentalchat-finetune"
    wandb: bool = False
    wandb_project: str = "mentalchat-finetune"
    wandb_group: str | None = None
    wandb_mode: Literal["offline", "online"] = Field(
        "offline", description="offline: runs under wandb_dir, uploaded later with `wandb sync`; online needs $WANDB_API_KEY")
    wandb_dir: str | None = Field(None, description="where W&B writes its runs (None: <finetune output>/wandb)")


class MergeSettings(StrictModel):
    """Optional merged copies: the adapter folded into a bf16 (never 4-bit) base."""

    enabled: bool = False
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class TuneSettings(StrictModel):
    max_concurrent_trials: int | None = Field(None, ge=1, description="None: as many as resources allow")
    trial_cpus: float = Field(0.05, gt=0, description="CPU share of each Tune trial's driver function")


class FinetuneConfig(StrictModel):
    """The ``finetune:`` section of a config file."""

    models: list[ModelSpec] = Field(min_length=1)
    data_configs: list[DataConfigName] = Field(
        default_factory=lambda: list(SINGLE_TURN_CONFIGS),
        min_length=1,
        description="multiturn: every qa_pair of both sources plus the dialogues with split 'train'",
    )
    dialogues: str | None = Field(
        None,
        description=(
            "dialogues table (Parquet) for the multiturn configuration; default: dialogues.parquet next to "
            "the dataset's qa_pairs.parquet"
        ),
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="dotted recipe keys (lora.r, optim.learning_rate, train.micro_batch_size, ...) to cross",
    )
    quantization: QuantizationSettings = Field(default_factory=QuantizationSettings)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    failure: FailureSettings = Field(default_factory=FailureSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    tune: TuneSettings = Field(default_factory=TuneSettings)
    merge: MergeSettings = Field(default_factory=MergeSettings)
    deepspeed: dict[str, Any] | None = Field(
        None,
        description=(
            "a DeepSpeed config (mapping, or a JSON file path read on the driver so every worker gets its "
            "content), e.g. ZeRO-2/3; needs scaling.use_gpu; None: plain DDP"
        ),
    )
    storage_path: str | None = Field(
        None,
        description=(
            "Ray checkpoints and results: a folder every node mounts (NFS, ...) or s3://, gs://, ...; "
            "default <output>/ray_results (one node only)"
        ),
    )
    experiment_name: str = Field("finetune", pattern=r"^[A-Za-z0-9_.-]+$")
    export: Literal["final", "best"] = Field("final", description="adapter written to <output>/adapters")
    decontamination: DecontaminationConfig = Field(
        default_factory=DecontaminationConfig,
        description="drop training pairs whose input near-duplicates a benchmark question (before splitting)",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _models_from_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("deepspeed", mode="before")
    @classmethod
    def _deepspeed_file(cls, value: Any) -> Any:
        """A path is read here, on the driver: a worker on another node (other cwd) may not have it."""
        if not isinstance(value, (str, Path)):
            return value
        path = Path(value).expanduser()
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read the DeepSpeed config {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise ValueError(f"DeepSpeed config {path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"DeepSpeed config {path} must hold a JSON object")
        return doc

    @field_validator("deepspeed")
    @classmethod
    def _zero3_saves_the_adapter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """ZeRO-3 saves real adapter weights only when it gathers them at save time: turn that on."""
        zero = (value or {}).get("zero_optimization")
        if not isinstance(zero, dict) or zero.get("stage") != 3:
            return value
        key = "stage3_gather_16bit_weights_on_model_save"
        if zero.get(key) is False:
            raise ValueError(f"zero_optimization.{key}: false would save an empty adapter under ZeRO-3; "
                             "leave it out (mentalchat turns it on) or set true")
        return {**value, "zero_optimization": {**zero, key: True}}

    @field_validator("storage_path")
    @classmethod
    def _storage_scheme(cls, value: str | None) -> str | None:
        if value and "://" in value:
            scheme = value.split("://", 1)[0].lower()
            if scheme not in STORAGE_SCHEMES:
                raise ValueError(
                    f"unknown storage scheme {scheme!r}: use one of {', '.join(s + '://' for s in STORAGE_SCHEMES)} "
                    "or a folder every node mounts"
                )
        return value

    @property
    def zero_stage(self) -> int | None:
        """The DeepSpeed ZeRO stage (None without DeepSpeed)."""
        if self.deepspeed is None:
            return None
        return int((self.deepspeed.get("zero_optimization") or {}).get("stage", 0))

    def _check_deepspeed(self) -> None:
        ds = self.deepspeed
        if ds is None:
            return
        zero = ds.get("zero_optimization") or {}
        if not isinstance(zero, dict) or zero.get("stage", 0) not in (0, 1, 2, 3):
            raise ValueError("deepspeed.zero_optimization.stage must be 0, 1, 2 or 3")
        for key in DEEPSPEED_GEOMETRY_KEYS:
            if ds.get(key, "auto") != "auto":
                raise ValueError(
                    f"deepspeed.{key}: leave it 'auto' (or out); train.micro_batch_size and "
                    "train.effective_batch_size set the batch geometry for every worker count"
                )
        if not self.scaling.use_gpu:
            raise ValueError("deepspeed needs scaling.use_gpu: true (on CPU the recipe trains with plain DDP over gloo)")
        if zero.get("stage") == 3:
            q = self.quantization
            if q.bits == 8:
                raise ValueError("deepspeed ZeRO-3 cannot shard 8-bit bitsandbytes weights; use quantization.bits 4 or 16")
            if q.bits == 4 and (q.compute_dtype == "auto" or q.quant_storage != q.compute_dtype):
                want = "the compute dtype" if q.compute_dtype == "auto" else repr(q.compute_dtype)
                raise ValueError(
                    f"deepspeed ZeRO-3 with 4-bit weights shards them only when quantization.quant_storage is the "
                    f"model's dtype: set quantization.quant_storage to {want} (now {q.quant_storage!r}) and "
                    "quantization.compute_dtype explicitly (not auto)"
                )

    @model_validator(mode="after")
    def _check(self) -> FinetuneConfig:
        self._check_deepspeed()
        labels = [m.label for m in self.models]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"models: duplicate names {dup}; give each a distinct `name`")
        if len(set(self.data_configs)) != len(self.data_configs):
            raise ValueError(f"data_configs: duplicates in {self.data_configs}")
        if isinstance(self.train.max_steps, dict):
            unknown = set(self.train.max_steps) - set(DATA_CONFIGS)
            if unknown:
                raise ValueError(f"train.max_steps: unknown data configurations {sorted(unknown)}")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid.{key}: needs a non-empty list of values")
            self._grid_target(key)
        return self

    def _grid_target(self, key: str) -> None:
        parts = key.split(".")
        if parts[0] in ("models", "data_configs", "grid", "tune", "storage_path", "experiment_name",
                        "dialogues"):
            raise ValueError(f"grid.{key}: {parts[0]} cannot be varied inside the grid")
        node: Any = self
        for part in parts:
            if not isinstance(node, StrictModel) or part not in type(node).model_fields:
                raise ValueError(f"grid.{key}: no such setting")
            node = getattr(node, part)

    def result_hash(self) -> str:
        """Hash of what changes the adapters (not concurrency, logging, retries, retention or merging).

        It names the experiment, so a rerun with only such settings changed resumes the same one.
        """
        keep = {"models", "data_configs", "grid", "quantization", "lora", "optim", "train", "scaling", "deepspeed"}
        payload = json.dumps(self.model_dump(mode="json", include=keep), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # -- trials --------------------------------------------------------------------------------
    def hyperparameter_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values (one empty point when there is no grid)."""
        keys = sorted(self.grid)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def with_overrides(self, overrides: dict[str, Any]) -> FinetuneConfig:
        """This config with dotted-key overrides applied (validated again)."""
        doc = self.model_dump(mode="json")
        for key, value in overrides.items():
            node = doc
            *head, last = key.split(".")
            for part in head:
                node = node[part]
            node[last] = value
        try:
            return FinetuneConfig.model_validate(doc)
        except Exception as exc:  # pydantic's message names the field
            raise ConfigError(f"grid point {overrides}: {exc}") from exc

    def trials(self) -> list[TrialSpec]:
        """The experiment's grid: models × data configurations × hyperparameter points."""
        out = []
        points = self.hyperparameter_points()
        for model in self.models:
            for data_config in self.data_configs:
                for point in points:
                    out.append(TrialSpec(model=model, data_config=data_config, overrides=point))
        return out

    def steps_for(self, data_config: str, n_train: int, n_train_by_config: dict[str, int]) -> int:
        """Optimizer steps for one data configuration (see ``train.max_steps`` / ``steps_reference``)."""
        steps = self.train.max_steps
        if isinstance(steps, int):
            return steps
        if data_config in steps:
            return steps[data_config]
        ref = self.train.steps_reference
        if ref is None or ref not in steps:
            raise ConfigError(
                f"train.max_steps gives no steps for {data_config!r} and steps_reference "
                f"{ref!r} is not one of {sorted(steps)}"
            )
        ref_rows = n_train_by_config.get(ref)
        if not ref_rows:
            raise ConfigError(
                f"train.max_steps for {data_config!r} scales from {ref!r}, which has no training rows"
            )
        return max(1, math.ceil(steps[ref] * n_train / ref_rows))


class TrialSpec(StrictModel):
    """One Tune trial: a base model, a data configuration and a hyperparameter point."""

    model: ModelSpec
    data_config: DataConfigName
    overrides: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable, filesystem-safe name: the same trial always resumes the same Train run."""
        parts = [self.model.label, self.data_config]
        for k in sorted(self.overrides):
            parts.append(f"{k.split('.')[-1]}={json.dumps(self.overrides[k])}")
        raw = "__".join(parts)
        return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", raw)[:180]
