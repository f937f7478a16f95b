"""The QLoRA recipe as library objects: tokenizer, 4-bit base, LoRA config, ``SFTTrainer``.

Runs inside a Ray Train worker (or a plain process for the benchmarks). Nothing here knows
about Ray: :mod:`mentalchat.finetune.train_loop` adds reporting, checkpoints and resume.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import time
from pathlib import Path
from typing import Any

from mentalchat.config import ConfigError
from mentalchat.finetune.config import FinetuneConfig

__all__ = [
    "StepTimer",
    "TokenCountingSFTTrainer",
    "build_lora_config",
    "build_sft_config",
    "build_trainer",
    "compute_dtype",
    "gradient_accumulation",
    "load_base_model",
    "load_tokenizer",
    "model_load_kwargs",
    "sft_config_kwargs",
]


def compute_dtype(cfg: FinetuneConfig, on_gpu: bool) -> Any:
    import torch

    name = cfg.quantization.compute_dtype
    if name == "auto":
        name = "bfloat16" if on_gpu else "float32"
    return getattr(torch, name)


def gradient_accumulation(cfg: FinetuneConfig, world_size: int) -> int:
    """Micro-batches per optimizer step so that micro × accumulation × workers = effective batch."""
    per_step = cfg.train.micro_batch_size * world_size
    accum, rest = divmod(cfg.train.effective_batch_size, per_step)
    if rest or accum < 1:
        raise ConfigError(
            f"train.effective_batch_size={cfg.train.effective_batch_size} is not a multiple of "
            f"train.micro_batch_size={cfg.train.micro_batch_size} × {world_size} worker(s)"
        )
    return accum


def load_tokenizer(model_path: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:  # Llama-2 / Mistral ship none; unk keeps eos distinct from padding
        tok.pad_token = tok.unk_token or tok.eos_token
    return tok


def model_load_kwargs(cfg: FinetuneConfig, *, on_gpu: bool, device_index: int | None, use_deepspeed: bool
                      ) -> dict[str, Any]:
    """``from_pretrained`` arguments of the frozen base: dtype, bitsandbytes config, attention, placement.

    Under DDP every rank loads its own copy onto ``cuda:<local rank>``; under DeepSpeed the
    engine places it (no ``device_map``). For ZeRO-3 the config check made ``quant_storage`` the
    compute dtype, which is also the model's dtype here, so the packed 4-bit weights shard like
    the others (PEFT's ZeRO-3 + QLoRA recipe).
    """
    import torch
    from transformers import BitsAndBytesConfig

    dtype = compute_dtype(cfg, on_gpu)
    q = cfg.quantization
    kwargs: dict[str, Any] = {"dtype": dtype}
    if q.bits == 4:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.quant_type,
            bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=getattr(torch, q.quant_storage),
        )
    elif q.bits == 8:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    if cfg.train.attn_implementation:
        if cfg.train.attn_implementation == "mentalchat_varlen":
            from mentalchat.finetune.attention import register_varlen_attention

            register_varlen_attention()
        kwargs["attn_implementation"] = cfg.train.attn_implementation
    if not use_deepspeed:
        kwargs["device_map"] = {"": device_index} if on_gpu else "cpu"
    return kwargs


def load_base_model(
    model_path: str, cfg: FinetuneConfig, *, on_gpu: bool, device_index: int | None, use_deepspeed: bool
) -> Any:
    """The frozen base in 4-bit NF4 (or 8/16-bit), placed on this rank's own device.

    Under ZeRO-3, call it after the ``SFTConfig`` exists: its DeepSpeed config makes
    ``from_pretrained`` partition the weights as they load (``zero.Init``).
    """
    from transformers import AutoModelForCausalLM

    kwargs = model_load_kwargs(cfg, on_gpu=on_gpu, device_index=device_index, use_deepspeed=use_deepspeed)
    return AutoModelForCausalLM.from_pretrained(model_path, **kwargs)


def build_lora_config(cfg: FinetuneConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        bias=cfg.lora.bias,
        task_type="CAUSAL_LM",
    )


def sft_config_kwargs(
    cfg: FinetuneConfig,
    *,
    output_dir: str | Path,
    max_steps: int,
    world_size: int,
    on_gpu: bool,
    report_to: str | list[str] = "none",
    evaluate: bool = True,
    save: bool = True,
) -> dict[str, Any]:
    """The ``SFTConfig`` arguments of the recipe (a plain mapping: testable without DeepSpeed).

    Evaluation and checkpoints share one cadence, so every checkpoint carries the eval loss that
    ranks it. A DeepSpeed config goes through as given; its batch keys are "auto" (checked in
    :class:`FinetuneConfig`), which the Trainer fills from the geometry here.
    """
    t, o = cfg.train, cfg.optim
    save_steps = t.save_steps or max(1, math.ceil(max_steps / 10))
    eval_steps = t.eval_steps or save_steps
    dtype = cfg.quantization.compute_dtype
    if dtype == "auto":
        dtype = "bfloat16" if on_gpu else "float32"
    return dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=t.micro_batch_size,
        per_device_eval_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation(cfg, world_size),
        learning_rate=o.learning_rate,
        lr_scheduler_type=o.lr_scheduler,
        warmup_steps=o.warmup_ratio,  # transformers 5: a float below 1 is a ratio of max_steps
        max_grad_norm=o.max_grad_norm,
        weight_decay=o.weight_decay,
        adam_beta2=o.adam_beta2,
        optim=o.optimizer,
        max_length=t.max_length,
        packing=t.packing,
        packing_strategy="bfd",
        train_sampling_strategy="random" if t.packing else t.sampling,
        completion_only_loss=True,
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        bf16=dtype == "bfloat16" and on_gpu,
        fp16=dtype == "float16" and on_gpu,
        use_cpu=not on_gpu,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=eval_steps,
        save_strategy="steps" if save else "no",
        save_steps=save_steps,
        save_total_limit=None,  # Ray Train keeps the best k in storage; local copies are scratch
        logging_steps=min(t.logging_steps, save_steps),
        logging_first_step=True,
        report_to=report_to,
        seed=t.seed,
        data_seed=t.seed,
        torch_compile=t.torch_compile,
        dataloader_num_workers=t.dataloader_num_workers,
        ddp_find_unused_parameters=False,  # LoRA touches every adapted layer each step
        deepspeed=cfg.deepspeed,
        remove_unused_columns=True,
        disable_tqdm=True,
        save_only_model=False,
    )


def build_sft_config(cfg: FinetuneConfig, **kwargs: Any) -> Any:
    """``SFTConfig`` from :func:`sft_config_kwargs` (same keyword arguments)."""
    from trl import SFTConfig

    if cfg.deepspeed is not None and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("finetune.deepspeed is set, but the deepspeed package is not installed on this "
                          "worker (pip install deepspeed), or remove finetune.deepspeed to train with DDP")
    return SFTConfig(**sft_config_kwargs(cfg, **kwargs))


@functools.cache
def _trainer_class() -> type:
    import torch
    from trl import SFTTrainer

    class _Counting(SFTTrainer):
        """SFTTrainer that counts the tokens it processes: real (non-padding), loss and padded.

        The counts feed the manifest (tokens trained) and the throughput benchmark (padding share).
        They live on the device and are read only when reported, so no per-step host sync.
        """

        def __init__(self, *args: Any, adapter_dtype: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.adapter_dtype = adapter_dtype
            self._cast_adapter()
            self._keep_cpu_weights_unpacked()
            self.token_counts = torch.zeros(3, dtype=torch.float64, device=self.args.device)
            self.token_counts_offset = [0.0, 0.0, 0.0]  # carried over from a resumed checkpoint

        def _cast_adapter(self) -> None:
            """Trainable (LoRA) weights in the compute dtype, in a fresh run and after a resume alike.

            TRL casts a quantized model's adapter to bf16 (the QLoRA paper's choice on GPUs), even
            with float32 compute on CPU; a resume then reloads it through PEFT, which upcasts it to
            float32. Without this the dtype, and so the numbers, changed at every restart.
            """
            if self.adapter_dtype is None:
                return
            for param in self.model.parameters():
                if param.requires_grad and param.dtype != self.adapter_dtype and param.is_floating_point():
                    param.data = param.data.to(self.adapter_dtype)

        def _keep_cpu_weights_unpacked(self) -> None:
            """One weight format for the 4-bit base on CPU for the whole run.

            bitsandbytes repacks a 4-bit layer's weights for a faster CPU kernel the first time the
            layer runs without gradients (an evaluation) and unpacks them when the model is saved.
            Training after an evaluation or a checkpoint then ran through other kernels: its losses
            moved by up to 1e-3, differently per rank (only rank 0 saves the model), and a run
            resumed from a checkpoint no longer matched the run that wrote it.
            """
            for module in self.model.modules():
                if hasattr(module, "support_avx512bf16_for_cpu"):
                    module.support_avx512bf16_for_cpu = False

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            self._cast_adapter()  # before the optimizer and its restored state exist

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            """Length grouping over the global batch of a step (micro x accumulation x ranks).

            Transformers groups by one rank's share (micro x accumulation); accelerate then hands
            rank r the r-th micro-batch of each step from that order, so with a fixed global batch
            2 ranks would group (and so order) the data unlike 1 rank. Over the global batch the
            order, and every step's sequences, are the same for any worker count.
            """
            from transformers.trainer_pt_utils import LengthGroupedSampler

            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler):
                a = self.args
                sampler.batch_size = a.train_batch_size * a.gradient_accumulation_steps * a.world_size
            return sampler

        def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            ids = inputs["input_ids"]
            real = inputs["attention_mask"].sum() if "attention_mask" in inputs else ids.new_tensor(ids.numel())
            loss_tokens = (inputs["labels"] != -100).sum()
            counts = torch.stack([real.double(), loss_tokens.double(), ids.new_tensor(ids.numel()).double()])
            self.token_counts += counts.to(self.token_counts.device)
            return super().training_step(model, inputs, *args, **kwargs)

        def global_token_counts(self) -> dict[str, float]:
            """Counts summed over ranks (a collective: every rank must call it)."""
            total = self.token_counts.clone()
            if self.accelerator.num_processes > 1:
                total = self.accelerator.reduce(total, reduction="sum")
            real, loss, padded = (float(x) + off for x, off in zip(total.tolist(), self.token_counts_offset, strict=True))
            return {"tokens_trained": real, "tokens_in_loss": loss, "tokens_processed": padded}

    return _Counting


@functools.cache
def _step_timer_class() -> type:
    from transformers import TrainerCallback

    class _StepTimer(TrainerCallback):
        """Wall-clock time, TRL's cumulative ``num_tokens`` (non-padding) and this process's CPU time
        at every logged step.

        Throughput benchmarks difference two entries to get steady-state tokens/s; the same
        callback runs in a plain process and inside a Ray Train worker.
        """

        def __init__(self) -> None:
            self.records: list[tuple[float, int, float, float]] = []

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if logs and "num_tokens" in logs and "loss" in logs:
                self.records.append(
                    (time.perf_counter(), int(state.global_step), float(logs["num_tokens"]), time.process_time())
                )

    return _StepTimer


def __getattr__(name: str) -> Any:  # lazy: importing trl is slow and pulls torch
    if name == "TokenCountingSFTTrainer":
        return _trainer_class()
    if name == "StepTimer":
        return _step_timer_class()
    raise AttributeError(name)


def _with_labels(row: dict[str, list[int]]) -> dict[str, list[int]]:
    """Labels with the prompt masked (-100): the loss covers the answer only.

    Built here rather than by TRL so its preparation skips a closure-based ``map`` (cheaper, and
    quiet under Ray, where dill's bytecode scan leaks to the worker's stdout).
    """
    if "labels" in row:
        return row
    ids, mask = row["input_ids"], row["completion_mask"]
    return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask, strict=True)]}


def build_trainer(
    cfg: FinetuneConfig,
    *,
    model_path: str,
    train_rows: list[dict[str, list[int]]],
    eval_rows: list[dict[str, list[int]]] | None,
    output_dir: str | Path,
    max_steps: int,
    world_size: int = 1,
    on_gpu: bool = False,
    device_index: int | None = None,
    tokenizer: Any = None,
    callbacks: list[Any] | None = None,
    report_to: str | list[str] = "none",
    save: bool = True,
) -> Any:
    """A ready ``SFTTrainer`` (token-counting subclass) on pre-tokenized prompt-completion rows."""
    from datasets import Dataset

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_path)
    args = build_sft_config(
        cfg, output_dir=output_dir, max_steps=max_steps, world_size=world_size, on_gpu=on_gpu,
        report_to=report_to, evaluate=bool(eval_rows), save=save,
    )
    model = load_base_model(
        model_path, cfg, on_gpu=on_gpu, device_index=device_index, use_deepspeed=cfg.deepspeed is not None
    )
    train_ds = Dataset.from_list([_with_labels(r) for r in train_rows])
    eval_ds = Dataset.from_list([_with_labels(r) for r in eval_rows]) if eval_rows else None
    cls = _trainer_class()
    return cls(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=build_lora_config(cfg),
        callbacks=callbacks,
        adapter_dtype=compute_dtype(cfg, on_gpu),
    )
