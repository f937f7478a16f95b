"""The driver: build_dataset → finetune → generate → judge → stats, each output feeding the next.

Resume rule: a stage is skipped when its folder holds a done marker written by the run this
driver recorded, the files the next stage reads are there, and the stage's *key* is unchanged.
The key chains the stage's config hash with its inputs' keys (the questions file's content, the
transcript folder's listing, the previous stage's key), so changing ``judge:`` reruns judge and
stats, changing ``dataset:`` reruns everything after it, and a crash resumes at the stage that
did not finish (each stage resumes its own partial work: Tune trials, judge calls).

The record lives in ``<output>/pipeline.json`` and is rewritten after every stage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mentalchat.config import (
    ConfigError,
    apply_overrides,
    config_hash,
    load_config_dict,
    validate_section,
)
from mentalchat.io import read_done_marker, write_json_atomic
from mentalchat.pipeline.config import STAGES, PipelineConfig

__all__ = [
    "PipelinePlan",
    "PipelineResult",
    "StageResult",
    "load_pipeline",
    "run_pipeline",
]

log = logging.getLogger(__name__)

STATE_FILE = "pipeline.json"
LOCK_FILE = ".pipeline.lock"
TOP_LEVEL = ("pipeline", "engines", "run", *STAGES)
# What the next stage (or the user) reads from each stage's folder: all must exist to skip it.
REQUIRED = {
    "dataset": ("qa_pairs.parquet",),
    "finetune": ("manifest.parquet",),
    "generate": ("answers.parquet",),
    "judge": ("judgments.parquet",),
    "stats": ("report.md",),
}
# Secrets come from the environment only; a config's env: section may not carry them.
_SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"}


def _stage_classes() -> dict[str, type[BaseModel]]:
    from mentalchat.dataset.config import DatasetConfig
    from mentalchat.finetune.config import FinetuneConfig
    from mentalchat.generate.config import GenerateConfig
    from mentalchat.judge.config import JudgeConfig
    from mentalchat.stats.config import StatsConfig

    return {"dataset": DatasetConfig, "finetune": FinetuneConfig, "generate": GenerateConfig,
            "judge": JudgeConfig, "stats": StatsConfig}


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class PipelinePlan:
    """Every stage's validated config from one file (plus overrides)."""

    source: Path
    pipeline: PipelineConfig
    configs: dict[str, BaseModel]
    overrides: list[str] = field(default_factory=list)

    @property
    def stages(self) -> list[str]:
        return list(self.pipeline.stages)


def _stage_section(cls: type[BaseModel], doc: dict[str, Any], section: str, source: str) -> BaseModel:
    """As :func:`mentalchat.config.load_stage_config`, from a document already loaded."""
    stage = dict(doc.get(section) or {})
    for shared in ("engines", "run"):
        if shared in cls.model_fields and shared not in stage and shared in doc:
            stage[shared] = doc[shared]
    return validate_section(cls, {section: stage}, section, source=source)


def load_pipeline(config: str | Path, overrides: list[str] | None = None) -> PipelinePlan:
    """Read the config file, apply root-relative overrides, validate the sections of the stages that run.

    Stages left out of ``pipeline.stages`` are not validated (their sections may be absent).
    """
    source = Path(config)
    overrides = list(overrides or [])
    for item in overrides:
        head = item.split("=", 1)[0].split(".", 1)[0].strip()
        if head not in TOP_LEVEL:
            raise ConfigError(
                f"override {item!r}: the pipeline takes dotted paths from the file's root "
                f"({', '.join(TOP_LEVEL)}), e.g. finetune.lora.r=8"
            )
    doc = apply_overrides(load_config_dict(source), overrides)
    pipe = validate_section(PipelineConfig, doc, "pipeline", source=str(source))
    classes = _stage_classes()
    configs: dict[str, BaseModel] = {}
    for stage in pipe.stages:
        cfg = _stage_section(classes[stage], doc, stage, str(source))
        if stage == "judge":
            cfg = cfg.resolve_paths(source.resolve().parent)  # type: ignore[attr-defined]
        configs[stage] = cfg
    for name in pipe.env:
        if _SECRET_WORDS & set(name.upper().split("_")):
            raise ConfigError(
                f"{source}: pipeline.env.{name}: secrets come from the environment (or a Kubernetes "
                "secret), never from a config file"
            )
    plan = PipelinePlan(source=source, pipeline=pipe, configs=configs, overrides=overrides)
    _check_inputs(plan)
    return plan


def _check_inputs(plan: PipelinePlan) -> None:
    """Fail before any stage runs when an input a stage needs is missing."""
    p = plan.pipeline
    stages = set(p.stages)
    if stages & {"generate", "judge"}:
        p.questions_path()
    if "finetune" in stages and "dataset" not in stages and not p.dataset:
        raise ConfigError("pipeline: finetune without the dataset stage needs pipeline.dataset (a qa_pairs file)")
    if "judge" in stages and "generate" not in stages:
        raise ConfigError("pipeline: the judge stage needs the generate stage (use jobs/judge.py for other answers)")
    if "stats" in stages and "judge" not in stages and not (p.fastchat or p.human):
        raise ConfigError("pipeline: stats without the judge stage needs pipeline.fastchat or pipeline.human")
    for name in ("dataset", "adapters", "transcripts"):
        value = getattr(p, name)
        if value and not Path(value).expanduser().exists():
            raise ConfigError(f"pipeline.{name}: not found: {value}")
    for value in [*p.human, *p.fastchat]:
        if not Path(value).expanduser().exists():
            raise ConfigError(f"pipeline: input not found: {value}")


# ---------------------------------------------------------------------------------------------
# Keys


def _digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint(path: str | Path | None) -> str | None:
    """Content hash of a small file; for a folder, its listing (names, sizes, mtimes) or its done marker."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()[:16]
    if path.is_dir():
        marker = read_done_marker(path)
        if marker is not None:
            return _digest(marker)
        listing = sorted(
            (str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns)
            for f in path.rglob("*") if f.is_file()
        )
        return _digest(listing)
    return None


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class StageResult:
    """One stage of one run: ran or skipped, where it wrote, and its headline figures."""

    stage: str
    folder: Path
    status: str  # "ran" | "skipped" | "failed"
    seconds: float
    key: str
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class PipelineResult:
    output: Path
    stages: list[StageResult]
    seconds: float
    notice: str | None = None
    ray_seconds: float = 0.0

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.stage == name), None)

    @property
    def ran(self) -> list[str]:
        return [s.stage for s in self.stages if s.status == "ran"]

    @property
    def skipped(self) -> list[str]:
        return [s.stage for s in self.stages if s.status == "skipped"]


# ---------------------------------------------------------------------------------------------
# The run


class _Driver:
    def __init__(self, plan: PipelinePlan, output: Path, echo: Callable[[str], None], progress: bool) -> None:
        self.plan = plan
        self.p = plan.pipeline
        self.output = output
        self.echo = echo
        self.progress = progress
        self.state_path = output / STATE_FILE
        self.state = self._read_state()
        self.keys: dict[str, str] = {}
        self.started_ray = False
        self.ray_seconds = 0.0

    # -- state ---------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {"stages": {}}
        if not isinstance(state, dict) or not isinstance(state.get("stages"), dict):
            return {"stages": {}}
        return state

    def _save_state(self) -> None:
        self.state["config"] = str(self.plan.source)
        self.state["overrides"] = self.plan.overrides
        self.state["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_json_atomic(self.state_path, self.state)

    def folder(self, stage: str) -> Path:
        return self.output / getattr(self.p.dirs, stage)

    # -- inputs ----------------------------------------------------------------------------------
    def dataset_file(self) -> Path | None:
        if "dataset" in self.p.stages:
            return self.folder("dataset") / "qa_pairs.parquet"
        if self.p.dataset:
            path = Path(self.p.dataset).expanduser()
            return path / "qa_pairs.parquet" if (path / "qa_pairs.parquet").is_file() else path
        return None

    def adapters(self) -> Path | None:
        if "finetune" in self.p.stages:
            return self.folder("finetune")
        return Path(self.p.adapters).expanduser() if self.p.adapters else None

    def key(self, stage: str) -> str:
        """The stage's config hash chained with the keys (or fingerprints) of everything it reads."""
        cfg_hash = config_hash(self.plan.configs[stage])
        p = self.p

        def upstream(name: str, external: Path | None) -> str | None:
            return self.keys.get(name) if name in p.stages else fingerprint(external)

        if stage == "dataset":
            from mentalchat.dataset.build import resolve_transcripts

            folder = None
            cfg = self.plan.configs["dataset"]
            if cfg.interview.enabled:  # type: ignore[attr-defined]
                folder = resolve_transcripts(cfg, p.transcripts)  # type: ignore[arg-type]
            inputs: dict[str, Any] = {"transcripts": fingerprint(folder)}
        elif stage == "finetune":
            inputs = {"dataset": upstream("dataset", self.dataset_file())}
        elif stage == "generate":
            inputs = {"questions": fingerprint(p.questions_path()), "adapters": upstream("finetune", self.adapters())}
        elif stage == "judge":
            inputs = {"questions": fingerprint(p.questions_path()), "answers": self.keys.get("generate")}
        else:
            inputs = {
                "judgments": self.keys.get("judge"),
                "dataset": upstream("dataset", self.dataset_file()),
                "human": [fingerprint(h) for h in p.human],
                "fastchat": [fingerprint(f) for f in p.fastchat],
            }
        return _digest(stage, cfg_hash, inputs)

    def can_skip(self, stage: str, key: str) -> bool:
        rec = self.state["stages"].get(stage) or {}
        if rec.get("status") != "done" or rec.get("key") != key:
            return False
        folder = self.folder(stage)
        marker = read_done_marker(folder)
        if marker is None or marker.get("stage") != stage or marker.get("config_hash") != rec.get("marker_hash"):
            return False
        return all((folder / name).exists() for name in REQUIRED[stage])

    # -- Ray -------------------------------------------------------------------------------------
    def needs_ray(self, stage: str) -> bool:
        cfg = self.plan.configs[stage]
        if stage == "finetune":
            return True
        if stage == "generate":
            return cfg.executor == "ray"  # type: ignore[attr-defined]
        if stage == "judge":
            return cfg.executor == "ray"  # type: ignore[attr-defined]
        if stage == "dataset":
            return True  # interview actors and vLLM engines run as Ray tasks
        return False

    def ensure_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        t0 = time.perf_counter()
        opts = self.p.ray
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": opts.log_to_driver,
                                  "configure_logging": False}
        address = opts.address or os.environ.get("RAY_ADDRESS")
        if address:
            kwargs["address"] = address
        elif opts.num_cpus:
            kwargs["num_cpus"] = opts.num_cpus
        ray.init(**kwargs)
        self.started_ray = True
        self.ray_seconds = time.perf_counter() - t0
        where = address or "a local cluster"
        self.echo(f"ray: joined {where} in {self.ray_seconds:.1f} s ({ray.cluster_resources().get('CPU', 0):g} CPUs)")

    def release_placement_groups(self) -> None:
        """Remove placement groups this job still holds after a stage (none should be in use then).

        Ray Train V2 run inside Tune trials leaves each trial's worker-group placement group
        reserved until the driver exits (Ray 2.60); on a 4-CPU local cluster that starves the
        next stage's engine actors, which then wait forever.
        """
        import ray

        if not ray.is_initialized():
            return
        from ray._raylet import PlacementGroupID
        from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

        job = ray.get_runtime_context().get_job_id()
        freed = 0.0
        for pg_id, info in placement_group_table().items():
            if info.get("state") != "CREATED" or not pg_id.endswith(job):
                continue
            remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(pg_id)))
            freed += sum(b.get("CPU", 0.0) for b in (info.get("bundles") or {}).values())
        if freed:
            self.echo(f"    released {freed:g} CPUs that finished Ray Train trials still held in placement groups")

    # -- stages ----------------------------------------------------------------------------------
    def run_stage(self, stage: str) -> dict[str, Any]:
        cfg: Any = self.plan.configs[stage]
        folder = self.folder(stage)
        if stage == "dataset":
            from mentalchat.dataset.build import build_dataset

            stats = build_dataset(cfg, folder, transcripts=self.p.transcripts, echo=self.echo)
            return {"pairs": stats["pairs"], "rejected": stats["rejected"],
                    "crisis_flagged": stats.get("crisis", {}).get("flagged")}
        if stage == "finetune":
            from mentalchat.finetune.tune import run_finetune

            dataset = self.dataset_file()
            assert dataset is not None
            manifest = run_finetune(cfg, dataset, folder).to_pylist()
            return {"adapters": len(manifest),
                    "trials": {r["trial_id"]: {"steps": r["steps"], "train_loss": r["train_loss"],
                                               "eval_loss": r["eval_loss"]} for r in manifest}}
        if stage == "generate":
            from mentalchat.generate.run import run_generate

            summary = run_generate(cfg, self.p.questions_path(), folder, adapters=self.adapters(),
                                   use_ray=cfg.executor == "ray")
            return {"answers": summary.answers, "failed": summary.failed, "models": summary.models,
                    "questions": summary.questions}
        if stage == "judge":
            from mentalchat.judge.run import run_judge

            answers = self.folder("generate") / "answers.parquet"
            js = run_judge(cfg, self.p.questions_path(), [answers], folder, progress=self.progress, echo=self.echo)
            return {"planned": js.planned, "scored": js.scored, "failed": js.failed, "calls": js.called,
                    "spent_usd": round(js.spent_usd, 4), "failures": js.failures}
        from mentalchat.stats.run import run_stats

        judgments = [self.folder("judge") / "judgments.parquet"] if "judge" in self.p.stages else []
        dataset = self.dataset_file()
        result = run_stats(cfg, folder, judgments=judgments, fastchat=self.p.fastchat, human=self.p.human,
                           dataset=dataset if dataset is not None and dataset.exists() else None)
        return {"report_md": str(result.report_md), "report_html": str(result.report_html),
                "tables": sorted(result.tables), "unmapped": result.unmapped}

    def run(self) -> PipelineResult:
        t_start = time.perf_counter()
        results: list[StageResult] = []
        n = len(self.p.stages)
        for i, stage in enumerate(self.p.stages, 1):
            key = self.key(stage)
            self.keys[stage] = key
            folder = self.folder(stage)
            if self.can_skip(stage, key):
                facts = dict((self.state["stages"].get(stage) or {}).get("facts") or {})
                self.echo(f"==> [{i}/{n}] {stage}: skipped (output complete, config and inputs unchanged) "
                          f"-> {folder}")
                results.append(StageResult(stage, folder, "skipped", 0.0, key, facts))
                continue
            self.echo(f"==> [{i}/{n}] {stage} -> {folder}")
            if self.needs_ray(stage):
                self.ensure_ray()
            self.state["stages"][stage] = {"status": "running", "key": key}
            self._save_state()
            t0 = time.perf_counter()
            try:
                facts = self.run_stage(stage)
            except BaseException as exc:
                secs = time.perf_counter() - t0
                self.state["stages"][stage] = {"status": "failed", "key": key, "seconds": round(secs, 1),
                                               "error": f"{type(exc).__name__}: {exc}"[:2000]}
                self._save_state()
                self.echo(f"==> [{i}/{n}] {stage} FAILED after {secs:.1f} s: {type(exc).__name__}: {exc}")
                self.echo("    rerun the same command to resume: finished stages are skipped")
                raise
            secs = time.perf_counter() - t0
            if stage == "finetune":
                self.release_placement_groups()
            marker = read_done_marker(folder) or {}
            self.state["stages"][stage] = {
                "status": "done", "key": key, "marker_hash": marker.get("config_hash"),
                "seconds": round(secs, 1), "facts": facts,
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self._save_state()
            self.echo(f"==> [{i}/{n}] {stage} done in {secs:.1f} s")
            results.append(StageResult(stage, folder, "ran", secs, key, facts))
        return PipelineResult(self.output, results, time.perf_counter() - t_start, self.p.notice, self.ray_seconds)


@contextlib.contextmanager
def _output_lock(output: Path) -> Iterator[None]:
    """One driver per output folder: a second one would interleave writes into the same stages."""
    output.mkdir(parents=True, exist_ok=True)
    with (output / LOCK_FILE).open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another pipeline is running with --output {output}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_pipeline(
    plan: PipelinePlan,
    output: str | Path,
    *,
    echo: Callable[[str], None] | None = None,
    progress: bool = True,
    shutdown_ray: bool = True,
) -> PipelineResult:
    """Run (or resume) every stage of ``plan`` into sub-folders of ``output``; see the module docstring."""
    echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if "://" in str(output):
        raise ConfigError(
            f"--output {output}: the pipeline writes to a local or shared (NFS) folder; put Ray's "
            "checkpoints on object storage with finetune.storage_path: s3://..."
        )
    output = Path(output).expanduser().resolve()
    for name, value in plan.pipeline.env.items():
        os.environ.setdefault(name, value)
    if plan.pipeline.notice:
        echo(f"NOTE: {plan.pipeline.notice}")
    driver = _Driver(plan, output, echo, progress)
    try:
        with _output_lock(output):
            result = driver.run()
    finally:
        if driver.started_ray and shutdown_ray:
            import ray

            ray.shutdown()
    from mentalchat.pipeline.summary import write_summary

    write_summary(result, plan)
    return result
