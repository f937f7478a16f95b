"""The Ray Train worker function: one rank of one trial's QLoRA run.

Each rank encodes the trial's rows, loads its own 4-bit base on its own device and trains with
TRL's ``SFTTrainer``. Every Hugging Face checkpoint (adapter, optimizer, scheduler, RNG states,
token counts) is reported to Ray Train with the metrics, so Ray keeps the best k in the run's
storage and a restarted worker group resumes from the latest one at the exact step it reached.

With several ranks, rank 0 owns every file of a checkpoint that more than one rank could write
(adapter, optimizer, trainer state, the mentalchat markers); another rank uploads only what is its
own (its RNG state under DDP, its shards under DeepSpeed ZeRO), and the progress marker records
which rank uploaded which file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from mentalchat.finetune.config import FinetuneConfig

__all__ = ["ADAPTER_META", "PROGRESS_FILE", "train_worker"]

PROGRESS_FILE = "mentalchat_progress.json"
ADAPTER_META = "mentalchat_adapter.json"
# Test-only fault injection, off unless set: "RANK:STEP" makes that rank exit abruptly after
# optimizer step STEP of an attempt that restored no checkpoint (tests/finetune/test_data_parallel.py).
KILL_ENV = "MENTALCHAT_TEST_KILL_RANK_AT_STEP"


def _last_logged(history: list[dict[str, Any]], key: str) -> float | None:
    for entry in reversed(history):
        if key in entry:
            return float(entry[key])
    return None


def _checkpoint_files(folder: Path) -> list[str]:
    """Relative paths of the files in a local checkpoint folder (none when it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _gather(obj: Any, world: int) -> list[Any]:
    """``obj`` from every rank, in rank order (a collective: every rank must call it)."""
    import torch.distributed as dist

    if world == 1 or not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _own_files(files_by_rank: list[list[str]]) -> list[list[str]]:
    """What each rank uploads: rank 0 everything it wrote, another rank only names rank 0 lacks.

    Ray Train merges every rank's checkpoint folder into one; two ranks uploading the same name
    would race, so a shared file (adapter, optimizer, trainer state) always comes from rank 0.
    """
    shared = set(files_by_rank[0])
    return [files_by_rank[0]] + [[f for f in files if f not in shared] for files in files_by_rank[1:]]


def _exit_if_told(rank: int, step: int, restored: bool) -> None:
    """Test-only (``KILL_ENV``): die like a crashed worker once this attempt's last report is taken.

    Waiting until the controller has consumed this rank's queued report makes the checkpoint the
    resume must start from deterministic: the one saved before ``step``.
    """
    spec = os.environ.get(KILL_ENV)
    if not spec or restored:
        return
    want_rank, want_step = (int(x) for x in spec.split(":"))
    if (rank, step) != (want_rank, want_step):
        return
    try:
        from ray.train.v2._internal.execution.context import get_train_context

        queue = get_train_context().get_result_queue()
        deadline = time.monotonic() + 30
        while not queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
    except Exception:  # another Ray version: fall back to more than one health-check interval
        time.sleep(5)
    os._exit(1)


def _report_callback(trainer_box: dict[str, Any], meta: dict[str, Any]) -> Any:
    import ray.train
    from transformers import TrainerCallback

    class RayReportCallback(TrainerCallback):
        """Reports metrics with each Hugging Face checkpoint to Ray Train (all ranks, same cadence)."""

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.seconds_offset = 0.0
            self.restarts = 0  # worker-group restarts that resumed from a checkpoint
            self.restored = False  # this attempt restored a checkpoint
            self.resumed_from_step = 0  # the step this attempt started at (the restored checkpoint's)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.resumed_from_step = int(state.global_step)  # the trainer state is loaded by now

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            _exit_if_told(ray.train.get_context().get_world_rank(), int(state.global_step), self.restored)

        def metrics(self, state: Any) -> dict[str, Any]:
            trainer = trainer_box["trainer"]
            hist = state.log_history
            out: dict[str, Any] = {
                "step": int(state.global_step),
                "epoch": float(state.epoch or 0.0),
                "train_loss": _last_logged(hist, "loss"),
                "eval_loss": _last_logged(hist, "eval_loss"),
                "learning_rate": _last_logged(hist, "learning_rate"),
                "train_seconds": self.seconds_offset + time.monotonic() - self.started,
                "restarts": self.restarts,
                "resumed_from_step": self.resumed_from_step,
                **trainer.global_token_counts(),  # collective over ranks
                **meta,
            }
            return {k: v for k, v in out.items() if v is not None}

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            ctx = ray.train.get_context()
            rank, world = ctx.get_world_rank(), ctx.get_world_size()
            metrics = self.metrics(state)
            ckpt_dir = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if rank == 0 and ckpt_dir.is_dir():
                (ckpt_dir / ADAPTER_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            files = _checkpoint_files(ckpt_dir)
            if rank == 0 and files:
                files = sorted({*files, PROGRESS_FILE})
            writers = _gather({"pid": os.getpid(), "hostname": socket.gethostname(), "files": files}, world)
            own = _own_files([w["files"] for w in writers])
            for name in set(files) - set(own[rank]):  # rank 0 uploads these
                (ckpt_dir / name).unlink()
            if rank == 0 and files:
                progress = {k: metrics[k] for k in ("step", "train_seconds", "restarts", "resumed_from_step",
                                                     "tokens_trained", "tokens_in_loss", "tokens_processed")}
                # Which process and Ray node wrote it: lets operators (and the kill and
                # multi-node tests) find the worker; hostnames repeat where nodes share a host.
                progress.update(pid=os.getpid(), hostname=socket.gethostname(),
                                node_id=ray.get_runtime_context().get_node_id())
                progress["ranks"] = [{"rank": r, "pid": w["pid"], "hostname": w["hostname"], "files": own[r]}
                                     for r, w in enumerate(writers)]
                (ckpt_dir / PROGRESS_FILE).write_text(json.dumps(progress), encoding="utf-8")
            checkpoint = ray.train.Checkpoint.from_directory(str(ckpt_dir)) if own[rank] else None
            ray.train.report(
                metrics,
                checkpoint=checkpoint,
                checkpoint_dir_name=f"checkpoint-{state.global_step:06d}",
                delete_local_checkpoint_after_upload=True,
            )
            if checkpoint is None and ckpt_dir.is_dir():
                shutil.rmtree(ckpt_dir, ignore_errors=True)

    return RayReportCallback()


def _restore(trainer: Any, callback: Any, work: Path) -> str | None:
    """Download the run's latest checkpoint (if any) and set the carried-over counters."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    callback.restored = True
    local = work / "resume"
    checkpoint.to_directory(str(local))
    progress_file = local / PROGRESS_FILE
    if progress_file.is_file():
        progress = json.loads(progress_file.read_text(encoding="utf-8"))
        callback.seconds_offset = float(progress.get("train_seconds", 0.0))
        callback.restarts = int(progress.get("restarts", 0)) + 1
        # Counters are global sums; put the carried-over part on one rank so the reduce is exact.
        if ray.train.get_context().get_world_rank() == 0:
            trainer.token_counts_offset = [
                float(progress.get(k, 0.0)) for k in ("tokens_trained", "tokens_in_loss", "tokens_processed")
            ]
    return str(local)


def train_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train ``train_loop_per_worker``. ``config`` holds JSON settings and two Arrow tables."""
    import ray.train
    import ray.train.torch
    import torch

    from mentalchat.core.prompt_format import PromptFormatter
    from mentalchat.finetune.data import encode_rows
    from mentalchat.finetune.models import materialize_model
    from mentalchat.finetune.recipe import build_trainer, load_tokenizer

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = FinetuneConfig.model_validate(config["finetune"])
    on_gpu = cfg.scaling.use_gpu and torch.cuda.is_available()
    device_index = None
    if on_gpu:
        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
        device_index = device.index if device.index is not None else torch.cuda.current_device()
    else:
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))

    model_path = materialize_model(config["model_path"])
    tokenizer = load_tokenizer(model_path)
    formatter = PromptFormatter(tokenizer, config["prompt_format"])
    t = cfg.train
    train_rows = encode_rows(formatter, config["train"], source_max_len=t.source_max_len, target_max_len=t.target_max_len)
    eval_rows = encode_rows(formatter, config["eval"], source_max_len=t.source_max_len, target_max_len=t.target_max_len)

    meta = {
        "trial_id": config["trial_id"],
        "base_model": config["base_model"],
        "base_model_path": config["model_path"],
        "data_config": config["data_config"],
        "prompt_format": formatter.format_id,
        "max_steps": int(config["max_steps"]),
        "num_workers": world,
    }
    work = Path(tempfile.mkdtemp(prefix=f"mentalchat-ft-r{rank}-"))
    try:
        box: dict[str, Any] = {}
        callback = _report_callback(box, meta)
        extra = []
        if config.get("record_steps"):  # benchmarks: per-step timings come back as the return value
            from mentalchat.finetune.recipe import StepTimer

            extra.append(StepTimer())
        trainer = build_trainer(
            cfg,
            model_path=model_path,
            train_rows=train_rows,
            eval_rows=eval_rows,
            output_dir=work / "hf",
            max_steps=int(config["max_steps"]),
            world_size=world,
            on_gpu=on_gpu,
            device_index=device_index,
            tokenizer=tokenizer,
            callbacks=[callback, *extra],
        )
        box["trainer"] = trainer
        resume = _restore(trainer, callback, work)
        trainer.train(resume_from_checkpoint=resume)
        # A run resumed from its final checkpoint trains no step and saves nothing; report once
        # more so the trial still ends with its metrics.
        final = callback.metrics(trainer.state)
        final["done"] = True
        ray.train.report(final)
        return {"metrics": final, "step_records": extra[0].records if extra else None}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def worker_env() -> dict[str, str]:
    """Environment for training workers: offline hub, quiet tokenizers (secrets are never copied)."""
    keep = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME", "MENTALCHAT_CACHE", KILL_ENV)
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env
