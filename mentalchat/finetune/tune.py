"""The stage-2 experiment: one Ray Tune run over base models × data configurations (× grid).

Each Tune trial is a small driver function that builds a Ray Train ``TorchTrainer`` for its
model and data configuration and waits for it (the pattern Ray recommends for Train V2 inside
Tune); metrics stream from the training workers to Tune through ``TuneReportCallback``.

Everything that can be wrong with the input (schema, empty data configuration, missing model,
batch geometry) is checked in :func:`plan_experiment`, before any worker starts. The outputs are
written only when every trial succeeded: ``<output>/adapters/<trial_id>/`` (unmerged LoRA
adapters, loadable by vLLM), ``<output>/manifest.parquet`` and a done marker. Running the same
command again resumes: finished trials are kept, unfinished ones continue from their latest
checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from mentalchat.config import ConfigError
from mentalchat.core.resources import ACCELERATOR_PREFIX, Ask, ClusterShape, ensure_fits
from mentalchat.errors import MentalchatError
from mentalchat.finetune.config import FinetuneConfig, TrialSpec
from mentalchat.finetune.data import Split, decontaminate, load_training_table, make_splits
from mentalchat.finetune.models import check_model
from mentalchat.finetune.recipe import gradient_accumulation
from mentalchat.finetune.train_loop import ADAPTER_META, PROGRESS_FILE, train_worker, worker_env
from mentalchat.io import atomic_dir, write_done_marker, write_json_atomic
from mentalchat.schemas import write_table

__all__ = [
    "ExperimentPlan",
    "FinetuneError",
    "PlannedTrial",
    "plan_experiment",
    "run_finetune",
    "train_run_config",
    "train_scaling_config",
    "tune_run_config",
]

log = logging.getLogger(__name__)

ADAPTER_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    ADAPTER_META,
    PROGRESS_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "chat_template.jinja",
    "added_tokens.json",
)


class FinetuneError(MentalchatError, RuntimeError):
    """One or more trials failed; the message lists them with their errors."""


@dataclass
class PlannedTrial:
    spec: TrialSpec
    cfg: FinetuneConfig
    model_path: str
    max_steps: int
    n_train: int
    n_eval: int

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass
class ExperimentPlan:
    cfg: FinetuneConfig
    dataset: Path
    output: Path
    splits: dict[str, Split]
    trials: list[PlannedTrial]
    name: str
    storage_path: str
    config_hash: str
    decontamination: dict[str, Any] | None = None

    @property
    def train_storage(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}-train"


def _dataset_fingerprint(splits: dict[str, Split]) -> str:
    h = hashlib.sha256()
    for name in sorted(splits):
        for part in (splits[name].train, splits[name].eval):
            for row_id in sorted(part.column("id").to_pylist()):
                h.update(f"{name}:{row_id}\n".encode())
    return h.hexdigest()[:8]


def _absolute_storage(path: str) -> str:
    if "://" in path:
        return path
    return str(Path(path).expanduser().resolve())


def plan_experiment(
    cfg: FinetuneConfig, dataset: str | Path, output: str | Path, *, benchmark: str | Path | None = None
) -> ExperimentPlan:
    """Validate everything and lay out the trials; raises before any Ray worker exists.

    ``benchmark`` is the run's question file, the default reference of ``cfg.decontamination``.
    """
    if "://" in str(output):
        raise ConfigError(
            f"--output {output}: adapters and the manifest go to a local or shared folder; put Ray's "
            "checkpoints on object storage with storage_path: s3://..."
        )
    dataset = Path(dataset)
    output = Path(output).expanduser().resolve()
    t = cfg.train
    pairs = load_training_table(dataset, list(cfg.data_configs), dialogues=cfg.dialogues)
    table, decon = decontaminate(pairs, cfg.decontamination, benchmark=benchmark, source=str(dataset))
    splits = make_splits(
        dataset, list(cfg.data_configs), eval_fraction=t.eval_fraction, eval_max_rows=t.eval_max_rows, seed=t.seed,
        table=table,
    )
    n_train = {name: s.train.num_rows for name, s in splits.items()}
    resolved = {m.label: check_model(m.path) for m in cfg.models}
    trials = []
    for spec in cfg.trials():
        trial_cfg = cfg.with_overrides(spec.overrides)
        gradient_accumulation(trial_cfg, trial_cfg.scaling.num_workers)  # raises on a bad geometry
        steps = trial_cfg.steps_for(spec.data_config, n_train[spec.data_config], n_train)
        trials.append(
            PlannedTrial(
                spec=spec,
                cfg=trial_cfg,
                model_path=resolved[spec.model.label],
                max_steps=steps,
                n_train=n_train[spec.data_config],
                n_eval=splits[spec.data_config].eval.num_rows,
            )
        )
    keys = [p.key for p in trials]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"trial names collide: {sorted(k for k in keys if keys.count(k) > 1)}")
    chash = cfg.result_hash()
    name = f"{cfg.experiment_name}-{chash[:8]}-{_dataset_fingerprint(splits)}"
    storage = _absolute_storage(cfg.storage_path or str(output / "ray_results"))
    return ExperimentPlan(
        cfg=cfg, dataset=dataset, output=output, splits=splits, trials=trials, name=name,
        storage_path=storage, config_hash=chash, decontamination=decon,
    )


# ---------------------------------------------------------------------------------------------
# The Tune trial: builds and runs one TorchTrainer
# ---------------------------------------------------------------------------------------------
def train_run_config(cfg: FinetuneConfig, *, name: str, storage_path: str, worker_env: dict[str, str],
                     callbacks: list[Any] | None = None) -> Any:
    """One trial's Ray Train ``RunConfig``: checkpoints under ``storage_path`` (a shared folder or a
    URI such as ``s3://``; Ray opens it with pyarrow), best k kept, worker-group restarts."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    return RunConfig(
        name=name,
        storage_path=storage_path,
        checkpoint_config=CheckpointConfig(
            num_to_keep=cfg.checkpoint.num_to_keep,
            checkpoint_score_attribute=cfg.checkpoint.score_attribute,
            checkpoint_score_order=cfg.checkpoint.score_order,
        ),
        failure_config=FailureConfig(max_failures=cfg.failure.max_failures),
        callbacks=callbacks,
        worker_runtime_env={"env_vars": worker_env},
    )


def train_scaling_config(cfg: FinetuneConfig) -> Any:
    """One trial's Ray Train ``ScalingConfig`` (Ray Train sets up the process group: gloo on CPU)."""
    from ray.train import ScalingConfig

    s = cfg.scaling
    return ScalingConfig(
        num_workers=s.num_workers,
        use_gpu=s.use_gpu,
        resources_per_worker=s.resources_per_worker(),
        accelerator_type=s.accelerator_type,
        placement_strategy=s.placement_strategy,
    )


def run_trial(config: dict[str, Any], *, plan_json: dict[str, Any], splits: dict[str, Split]) -> None:
    """Tune trainable: one trial's TorchTrainer; metrics stream to Tune from the workers."""
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trial = plan_json["trials"][config["trial"]]
    cfg = FinetuneConfig.model_validate(trial["cfg"])
    split = splits[trial["data_config"]]
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "finetune": cfg.model_dump(mode="json"),
            "trial_id": config["trial"],
            "base_model": trial["base_model"],
            "model_path": trial["model_path"],
            "prompt_format": trial["prompt_format"],
            "data_config": trial["data_config"],
            "max_steps": trial["max_steps"],
            "train": split.train,
            "eval": split.eval,
        },
        scaling_config=train_scaling_config(cfg),
        run_config=train_run_config(cfg, name=config["trial"], storage_path=plan_json["train_storage"],
                                    worker_env=plan_json["worker_env"], callbacks=[TuneReportCallback()]),
    )
    result = trainer.fit()  # raises TrainingFailedError once max_failures restarts are spent
    if result.error is not None:
        raise result.error


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def _plan_json(plan: ExperimentPlan) -> dict[str, Any]:
    return {
        "train_storage": plan.train_storage,
        "worker_env": worker_env(),
        "trials": {
            p.key: {
                "cfg": p.cfg.model_dump(mode="json"),
                "base_model": p.spec.model.label,
                "model_path": p.model_path,
                "prompt_format": p.spec.model.prompt_format,
                "data_config": p.spec.data_config,
                "max_steps": p.max_steps,
            }
            for p in plan.trials
        },
    }


def _track(plan: ExperimentPlan, rows: list[dict[str, Any]]) -> None:
    """Each finished trial to MLflow / W&B (finetune.logging); see :mod:`mentalchat.finetune.tracking`."""
    lg = plan.cfg.logging
    if not (lg.mlflow or lg.wandb):
        return
    from mentalchat.finetune.tracking import TrialRecord, file_sha256, log_mlflow, log_wandb

    dataset_sha = file_sha256(plan.dataset) if plan.dataset.is_file() else ""
    by_key = {p.key: p for p in plan.trials}
    records = []
    for row in rows:
        p = by_key[row["trial_id"]]
        history = _checkpoint_history(row["checkpoint_path"], plan.storage_path)
        records.append(TrialRecord(
            key=p.key, experiment=plan.name,
            params={"base_model": p.spec.model.label, "data_config": p.spec.data_config, "max_steps": p.max_steps,
                    "n_train": p.n_train, "n_eval": p.n_eval, **json.loads(row["hyperparameters"])},
            tags={"data_config": p.spec.data_config, "base_model": p.spec.model.label, "dataset_sha256": dataset_sha,
                  "dataset_splits": _dataset_fingerprint(plan.splits), "config_hash": plan.config_hash},
            history=history,
            final={k: row[k] for k in ("train_loss", "eval_loss", "best_eval_loss", "steps", "tokens_trained")
                   if row.get(k) is not None},
            adapter=Path(row["adapter_path"]),
        ))
    if lg.mlflow:
        ids = log_mlflow(records, lg.mlflow_tracking_uri, lg.mlflow_experiment)
        log.info("finetune %s: %d trials logged to MLflow (%s)", plan.name, len(ids), lg.mlflow_tracking_uri or "default")
    if lg.wandb:
        ids = log_wandb(records, lg.wandb_project, lg.wandb_group, mode=lg.wandb_mode,
                        directory=lg.wandb_dir or plan.output / "wandb")
        log.info("finetune %s: %d trials logged to W&B (%s)", plan.name, len(ids), lg.wandb_mode)


def _checkpoint_history(checkpoint_path: str, storage_path: str) -> list[dict[str, Any]]:
    """The HF trainer's per-step log of a reported checkpoint (local folder or storage URI)."""
    from mentalchat.finetune.tracking import history_from_state, read_history

    if "://" not in storage_path:
        return read_history(checkpoint_path)
    import pyarrow.fs as pafs

    fs, _ = pafs.FileSystem.from_uri(storage_path)
    try:
        with fs.open_input_stream(f"{checkpoint_path.rstrip('/')}/trainer_state.json") as fh:
            state = json.loads(fh.read())
    except (OSError, ValueError):
        return []
    return history_from_state(state)


def _ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS"),
            log_to_driver=os.environ.get("MENTALCHAT_RAY_LOG_TO_DRIVER", "1") == "1",
        )


def trial_asks(cfg: FinetuneConfig) -> list[Ask]:
    """One Tune trial as resource asks: its driver function and its Ray Train worker group.

    Nothing here is sized down: the worker count and CPUs are part of the experiment's hash (and
    the gradient-accumulation geometry), so a trial that cannot fit is refused with the key to change.
    """
    s = cfg.scaling
    workers: dict[str, float] = dict(s.resources_per_worker())
    if s.accelerator_type:
        workers[ACCELERATOR_PREFIX + s.accelerator_type] = 0.001  # what Ray Train asks per worker
    return [
        Ask("each Tune trial's driver", {"CPU": cfg.tune.trial_cpus}, keys={"CPU": "finetune.tune.trial_cpus"}),
        Ask(f"a trial's {s.num_workers} Ray Train worker(s)", workers, count=s.num_workers,
            keys={"CPU": "finetune.scaling.cpus_per_worker", "GPU": "finetune.scaling.gpus_per_worker",
                  "GPU_off": "finetune.scaling.use_gpu",
                  "accelerator_type": "finetune.scaling.accelerator_type", "count": "finetune.scaling.num_workers"},
            same_node=s.placement_strategy == "STRICT_PACK"),
    ]


def check_trial_resources(cfgs: list[FinetuneConfig], *, cluster: ClusterShape | None = None) -> None:
    """Refuse, before Tune starts, a trial that this cluster can never schedule (it would wait forever)."""
    seen = set()
    for cfg in cfgs:
        marker = (cfg.scaling.model_dump_json(), cfg.tune.trial_cpus)
        if marker not in seen:
            seen.add(marker)
            ensure_fits(trial_asks(cfg), stage="finetune", cluster=cluster)


def _idle_cluster_probe(trial_cpus: float, n_trials: int) -> Callable[[], str | None]:
    """Pending demands, counted only while no Train worker holds resources (trials can save rarely)."""
    import ray

    from mentalchat.core.watchdog import pending_demands

    def probe() -> str | None:
        pending = pending_demands()
        if not pending:
            return pending
        total, free = ray.cluster_resources(), ray.available_resources()
        used_cpu = total.get("CPU", 0.0) - free.get("CPU", 0.0)
        used_gpu = total.get("GPU", 0.0) - free.get("GPU", 0.0)
        busy = used_gpu > 0 or used_cpu > trial_cpus * n_trials + 1e-6
        return "" if busy else pending

    return probe


def _tick_callback(dog: Any) -> Any:
    """A Tune callback ticking ``dog`` on every trial start and report."""
    from ray.tune import Callback

    return type("_WatchdogTicks", (_WatchdogTicks, Callback), {})(dog)


class _WatchdogTicks:
    """Ticks the driver's watchdog. Tune pickles its callbacks with the experiment state; the
    watchdog (a thread, locks) stays behind. Module level, so no closure drags it along."""

    def __init__(self, dog: Any) -> None:
        self.dog = dog

    def __getstate__(self) -> dict[str, Any]:
        return {"dog": None}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.dog is not None:
            self.dog.tick()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self.dog is not None:
            self.dog.tick()


def _run_tuner(plan: ExperimentPlan) -> Any:
    from mentalchat.core.watchdog import StallWatchdog

    dog = StallWatchdog(
        "finetune", probe=_idle_cluster_probe(plan.cfg.tune.trial_cpus, len(plan.trials)),
        hint="Check finetune.scaling (num_workers, cpus_per_worker, use_gpu, accelerator_type) and "
             "finetune.tune.trial_cpus against the cluster's nodes.",
    )
    with dog:
        return _fit_tuner(plan, [_tick_callback(dog)])


def _fit_tuner(plan: ExperimentPlan, extra_callbacks: list[Any]) -> Any:
    from ray import tune

    cfg = plan.cfg
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, plan_json=_plan_json(plan), splits=plan.splits),
        {"CPU": cfg.tune.trial_cpus},
    )
    exp_path = f"{plan.storage_path.rstrip('/')}/{plan.name}"
    if tune.Tuner.can_restore(exp_path):
        log.info("resuming experiment %s", exp_path)
        tuner = tune.Tuner.restore(exp_path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([p.key for p in plan.trials])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=cfg.tune.max_concurrent_trials,
                trial_name_creator=lambda t: t.config["trial"],
                trial_dirname_creator=lambda t: t.config["trial"],
            ),
            run_config=tune_run_config(plan, extra_callbacks),
        )
    return tuner.fit()


def tune_run_config(plan: ExperimentPlan, extra_callbacks: list[Any] | None = None) -> Any:
    """The experiment's Ray Tune ``RunConfig``: its state next to the trials' Train runs in
    ``plan.storage_path``, so a driver on any node (or a new one) can restore it."""
    from ray import tune

    cfg = plan.cfg
    return tune.RunConfig(
        name=plan.name,
        storage_path=plan.storage_path,
        failure_config=tune.FailureConfig(max_failures=cfg.failure.trial_max_failures),
        callbacks=list(extra_callbacks or []),
        verbose=1,
    )


def _train_summary(plan: ExperimentPlan, p: PlannedTrial) -> dict[str, Any]:
    """Final metrics and checkpoints of one trial's Train run, read back from its storage."""
    from ray.train import Result

    result = Result.from_path(f"{plan.train_storage}/{p.key}")
    if result.checkpoint is None or not result.metrics:
        raise FinetuneError(f"{p.key}: the training run reported no checkpoint")
    out = dict(result.metrics)
    if int(out.get("step", -1)) != p.max_steps:
        raise FinetuneError(f"{p.key}: the last checkpoint is at step {out.get('step')}, not {p.max_steps}")
    attr, order = p.cfg.checkpoint.score_attribute, p.cfg.checkpoint.score_order
    scored = [(ck, m) for ck, m in (result.best_checkpoints or []) if m.get(attr) is not None]
    best = (min if order == "min" else max)(scored, key=lambda cm: cm[1][attr]) if scored else None
    out["final_checkpoint"] = result.checkpoint.path
    out["best_checkpoint"] = best[0].path if best else result.checkpoint.path
    out["best_eval_loss"] = best[1].get("eval_loss") if best else out.get("eval_loss")
    return out


def _copy_adapter(checkpoint_path: str, storage_path: str, dest: Path) -> None:
    """Copy the adapter files of a reported checkpoint into ``dest`` (atomically)."""
    import pyarrow.fs as pafs
    from ray.train import Checkpoint

    fs, _ = pafs.FileSystem.from_uri(storage_path) if "://" in storage_path else (pafs.LocalFileSystem(), None)
    with tempfile.TemporaryDirectory(prefix="mentalchat-adapter-") as tmp:
        Checkpoint(path=checkpoint_path, filesystem=fs).to_directory(tmp)
        if not (Path(tmp) / "adapter_config.json").is_file():
            raise FinetuneError(f"checkpoint {checkpoint_path} holds no adapter_config.json")
        with atomic_dir(dest) as out:
            for name in ADAPTER_FILES:
                src = Path(tmp) / name
                if src.is_file():
                    shutil.copy2(src, out / name)


def _manifest_row(plan: ExperimentPlan, p: PlannedTrial, m: dict[str, Any], adapter: Path,
                  merged: Path | None, checkpoint: str) -> dict[str, Any]:
    hp = {
        "quantization": p.cfg.quantization.model_dump(mode="json"),
        "lora": p.cfg.lora.model_dump(mode="json"),
        "optim": p.cfg.optim.model_dump(mode="json"),
        "train": p.cfg.train.model_dump(mode="json"),
        "scaling": p.cfg.scaling.model_dump(mode="json"),
    }

    def num(key: str) -> float | None:
        v = m.get(key)
        return float(v) if v is not None else None

    return {
        "trial_id": p.key,
        "model_id": p.key,
        "experiment": plan.name,
        "base_model": p.spec.model.label,
        "base_model_path": p.model_path,
        "data_config": p.spec.data_config,
        "overrides": json.dumps(p.spec.overrides, sort_keys=True),
        "hyperparameters": json.dumps(hp, sort_keys=True),
        "prompt_format": str(m.get("prompt_format", "")),
        "prompt_format_setting": p.spec.model.prompt_format,
        "steps": int(m["step"]),
        "max_steps": p.max_steps,
        "train_loss": num("train_loss"),
        "eval_loss": num("eval_loss"),
        "best_eval_loss": num("best_eval_loss"),
        "adapter_path": str(adapter),
        "merged_path": str(merged) if merged else None,
        "checkpoint_path": checkpoint,
        "wall_time_s": float(m.get("wall_time_s", 0.0)),
        "train_seconds": num("train_seconds"),
        "restarts": int(m.get("restarts", 0)),
        "tokens_trained": int(m.get("tokens_trained", 0)),
        "tokens_in_loss": int(m.get("tokens_in_loss", 0)),
        "tokens_processed": int(m.get("tokens_processed", 0)),
        "n_train": p.n_train,
        "n_eval": p.n_eval,
        "num_workers": p.cfg.scaling.num_workers,
        "config_hash": plan.config_hash,
    }


def run_finetune(
    cfg: FinetuneConfig, dataset: str | Path, output: str | Path, *, benchmark: str | Path | None = None
) -> pa.Table:
    """Plan, run the Tune experiment, export adapters, write the manifest; returns the manifest.

    With decontamination on, ``<output>/decontamination.json`` lists the pairs dropped (or flagged).
    """
    plan = plan_experiment(cfg, dataset, output, benchmark=benchmark)
    log.info("finetune %s: %d trials, storage %s", plan.name, len(plan.trials), plan.storage_path)
    _ensure_ray()
    check_trial_resources([p.cfg for p in plan.trials])
    try:
        results = _run_tuner(plan)
    finally:
        # The run is over: whatever trials' worker groups still hold goes back to the cluster, so
        # the next work in this driver (generate, another test) is not left waiting for CPUs.
        freed = release_trial_placement_groups()
        if freed:
            log.info("finetune %s: released %g CPUs still held by finished trials' placement groups", plan.name, freed)

    by_key = {p.key: p for p in plan.trials}
    failures, done = [], {}
    for result in results:
        key = (result.config or {}).get("trial")
        if result.error is not None or key not in by_key:
            failures.append(f"{key}: {result.error!r}")
            continue
        done[key] = result.metrics or {}
    missing = sorted(set(by_key) - set(done) - {f.split(':', 1)[0] for f in failures})
    failures += [f"{k}: no result" for k in missing]
    if failures:
        raise FinetuneError(
            f"{len(failures)} of {len(plan.trials)} trials failed (rerun the same command to resume):\n  "
            + "\n  ".join(failures)
        )

    from mentalchat.finetune.merge import merge_adapter

    rows = []
    for p in plan.trials:
        summary = _train_summary(plan, p)
        summary["wall_time_s"] = float(done[p.key].get("time_total_s", 0.0))
        ckpt = summary["best_checkpoint"] if cfg.export == "best" else summary["final_checkpoint"]
        adapter = plan.output / "adapters" / p.key
        _copy_adapter(ckpt, plan.storage_path, adapter)
        merged = None
        if p.cfg.merge.enabled:
            merged = plan.output / "merged" / p.key
            merge_adapter(p.model_path, adapter, merged, dtype=p.cfg.merge.dtype)
        rows.append(_manifest_row(plan, p, summary, adapter, merged, ckpt))

    from mentalchat.schemas import get_table

    table = get_table("manifest").from_rows(rows)
    write_table(table, plan.output / "manifest.parquet", "manifest")
    _track(plan, rows)
    decon = plan.decontamination
    if decon is not None:
        write_json_atomic(plan.output / "decontamination.json", decon)
    else:  # a report left by an earlier run with decontamination on would now be wrong
        (plan.output / "decontamination.json").unlink(missing_ok=True)
    write_done_marker(
        plan.output, stage="finetune", config_hash=plan.config_hash, experiment=plan.name, trials=len(rows),
        decontamination=None if decon is None else {"flagged": decon["flagged"], "removed": decon["removed"],
                                                    "reference": decon["reference"]},
    )
    return table


def release_trial_placement_groups() -> float:
    """Remove placement groups this job still holds once the Tune run is over; returns the CPUs freed.

    Ray Train V2 run inside Tune trials leaves each trial's worker-group placement group reserved
    until the driver exits (Ray 2.60). A driver that goes on to other work on the same cluster (the
    pipeline's next stage) would otherwise find those CPUs taken and its engine actors waiting forever.
    """
    import ray
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    if not ray.is_initialized():
        return 0.0
    job = ray.get_runtime_context().get_job_id()
    freed = 0.0
    for pg_id, info in placement_group_table().items():
        if info.get("state") != "CREATED" or not pg_id.endswith(job):
            continue
        remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(pg_id)))
        freed += sum(b.get("CPU", 0.0) for b in (info.get("bundles") or {}).values())
    return freed
