"""Experiment tracking that really logs: each trial to MLflow and/or Weights & Biases, after the grid.

Why after, from the driver, rather than Ray's logger callbacks: those see only what a trial
reports to Tune (a few checkpoints' metrics), not the per-step loss and learning rate, and they
do not know the exported adapter or the dataset. Here each finished trial becomes one run with
its hyperparameters, the dataset's hash, every logged step of the Hugging Face trainer's history
(``trainer_state.json`` of the final checkpoint: loss, learning rate, grad norm, eval loss), the
final metrics, and the adapter folder as an artefact. A rerun that resumes a finished
experiment logs nothing twice: runs carry the trial key and experiment as tags and are skipped
when a run with both exists (MLflow) or its run id is taken (W&B: the id is derived from them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentalchat.errors import UsageError

__all__ = ["TrialRecord", "file_sha256", "history_from_state", "log_mlflow", "log_wandb", "read_history"]

log = logging.getLogger(__name__)
#: trainer_state.json log_history keys worth a curve (others, like epoch, go along as they are).
CURVES = ("loss", "learning_rate", "grad_norm", "eval_loss")


@dataclass
class TrialRecord:
    """One finished trial as a tracking run."""

    key: str
    experiment: str
    params: dict[str, Any]
    tags: dict[str, str]
    history: list[dict[str, Any]] = field(default_factory=list)  # HF log_history entries (with "step")
    final: dict[str, float] = field(default_factory=dict)
    adapter: Path | None = None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def history_from_state(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-step entries of a parsed ``trainer_state.json`` (its run summary has no step)."""
    return [e for e in state.get("log_history", []) if "step" in e]


def read_history(checkpoint_dir: str | Path) -> list[dict[str, Any]]:
    """The HF trainer's ``log_history`` from a checkpoint folder (empty when it has none)."""
    path = Path(checkpoint_dir) / "trainer_state.json"
    if not path.is_file():
        return []
    return history_from_state(json.loads(path.read_text(encoding="utf-8")))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{name}."))
        else:
            out[name] = v if isinstance(v, int | float | str | bool) or v is None else json.dumps(v)
    return out


def log_mlflow(records: list[TrialRecord], tracking_uri: str | None, experiment: str) -> list[str]:
    """One MLflow run per trial (skipped when the experiment already has it); returns the run ids."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UsageError("finetune.logging.mlflow needs mlflow: pip install 'mentalchat[tracking]'") from None
    if tracking_uri and (tracking_uri.startswith("file:") or "://" not in tracking_uri):
        # MLflow 3 keeps its file store only on request; a file: URI in our config is that request.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    ids = []
    for rec in records:
        found = client.search_runs([exp_id], filter_string=f"tags.trial = '{rec.key}' and "
                                                           f"tags.experiment = '{rec.experiment}'")
        if found:
            ids.append(found[0].info.run_id)
            continue
        run = client.create_run(exp_id, run_name=rec.key, tags={"trial": rec.key, "experiment": rec.experiment,
                                                                 **rec.tags})
        rid = run.info.run_id
        for name, value in _flat(rec.params).items():
            client.log_param(rid, name, "" if value is None else str(value)[:6000])
        for entry in rec.history:
            for name in CURVES:
                if isinstance(entry.get(name), int | float):
                    client.log_metric(rid, name, float(entry[name]), step=int(entry["step"]))
        for name, value in rec.final.items():
            client.log_metric(rid, f"final_{name}", float(value))
        if rec.adapter is not None:
            client.log_artifacts(rid, str(rec.adapter), artifact_path="adapter")
        client.set_terminated(rid)
        ids.append(rid)
    return ids


def log_wandb(records: list[TrialRecord], project: str, group: str | None, *, mode: str = "offline",
              directory: str | Path | None = None) -> list[str]:
    """One W&B run per trial (offline by default: ``wandb sync`` uploads later); returns the run ids."""
    try:
        import wandb
    except ImportError:
        raise UsageError("finetune.logging.wandb needs wandb: pip install 'mentalchat[tracking]'") from None
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        raise UsageError("finetune.logging.wandb_mode=online needs $WANDB_API_KEY (or use offline and `wandb sync`)")
    ids = []
    for rec in records:
        run_id = hashlib.sha256(f"{rec.experiment}/{rec.key}".encode()).hexdigest()[:16]
        run = wandb.init(project=project, group=group, name=rec.key, id=run_id, mode=mode, dir=str(directory) if
                         directory else None, config=_flat(rec.params), tags=[rec.tags.get("data_config", "")],
                         resume="allow", reinit="finish_previous")
        try:
            run.config.update({f"tag.{k}": v for k, v in rec.tags.items()}, allow_val_change=True)
            for entry in rec.history:
                values = {n: float(entry[n]) for n in CURVES if isinstance(entry.get(n), int | float)}
                if values:
                    run.log(values, step=int(entry["step"]))
            run.summary.update({f"final_{k}": float(v) for k, v in rec.final.items()})
            if rec.adapter is not None:
                art = wandb.Artifact(f"adapter-{rec.key}", type="model", metadata={"dataset_sha256": rec.tags.get(
                    "dataset_sha256")})
                art.add_dir(str(rec.adapter))
                run.log_artifact(art)
        finally:
            run.finish()
        ids.append(run_id)
    return ids
