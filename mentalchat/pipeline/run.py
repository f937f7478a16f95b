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

from mentalchat.config import ConfigError, StrictModel, apply_overrides, config_hash, load_config_dict, validate_section
from mentalchat.core.stage import Stage, get_stage
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
TOP_LEVEL = ("pipeline", "engines", "run", "crisis_detector", *STAGES)
# Secrets come from the environment only; a config's env: section may not carry them.
_SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"}


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class PipelinePlan:
    """Every stage's validated config from one file (plus overrides)."""

    source: Path
    pipeline: PipelineConfig
    configs: dict[str, StrictModel]
    overrides: list[str] = field(default_factory=list)

    @property
    def stages(self) -> list[str]:
        return list(self.pipeline.stages)


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
    configs = {name: get_stage(name).config_from_doc(doc, source) for name in pipe.stages}
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
        p.multi_turn_paths(None)
        if "dataset" in p.multi_turn_questions and "dataset" not in stages and not p.dataset:
            raise ConfigError("pipeline.multi_turn_questions: 'dataset' needs the dataset stage or pipeline.dataset")
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
    paper_report: Path | None = None

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


class _Context:
    """What one stage sees of the run (:class:`mentalchat.core.stage.StageContext`)."""

    def __init__(self, driver: _Driver, stage: str) -> None:
        self._driver = driver
        p = driver.p
        self.folder = driver.folder(stage)
        self.echo = driver.echo
        self.progress = driver.progress
        self.transcripts = p.transcripts
        self.human = list(p.human)
        self.fastchat = list(p.fastchat)

    def runs(self, stage: str) -> bool:
        return stage in self._driver.p.stages

    def folder_of(self, stage: str) -> Path:
        return self._driver.folder(stage)

    def key_of(self, stage: str) -> str | None:
        return self._driver.keys.get(stage)

    def upstream_key(self, stage: str, external: Path | None) -> str | None:
        return self.key_of(stage) if self.runs(stage) else fingerprint(external)

    def fingerprint(self, path: str | Path | None) -> str | None:
        return fingerprint(path)

    def questions_path(self) -> Path:
        """The benchmark questions; with multi-turn files, one merged file inside the run's output."""
        return self._driver.questions_path()

    def dataset_file(self) -> Path | None:
        p = self._driver.p
        if self.runs("dataset"):
            return self.folder_of("dataset") / "qa_pairs.parquet"
        if p.dataset:
            path = Path(p.dataset).expanduser()
            return path / "qa_pairs.parquet" if (path / "qa_pairs.parquet").is_file() else path
        return None

    def adapters(self) -> Path | None:
        p = self._driver.p
        if self.runs("finetune"):
            return self.folder_of("finetune")
        return Path(p.adapters).expanduser() if p.adapters else None


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

    def dataset_folder(self) -> Path | None:
        if "dataset" in self.p.stages:
            return self.folder("dataset")
        if self.p.dataset and Path(self.p.dataset).expanduser().is_dir():
            return Path(self.p.dataset).expanduser()
        return None

    def questions_path(self) -> Path:
        """The benchmark file, or (with ``pipeline.multi_turn_questions``) ``<output>/questions.jsonl``.

        Why one merged file: generate, judge and decontamination all read one question file, so the
        multi-turn questions reach them without a second option in each stage. The file is rewritten
        only when its content changes, so its fingerprint (and the stages' keys) stays stable.
        """
        main = self.p.questions_path()
        extra = self.p.multi_turn_paths(self.dataset_folder())
        if not extra:
            return main
        from mentalchat.core.questions import QuestionError, load_questions

        lines, seen = [], {}
        for path in [main, *extra]:
            for q in load_questions(path):
                if q.question_id in seen:
                    raise QuestionError(
                        f"{path}: question_id {q.question_id!r} is also in {seen[q.question_id]}; "
                        "multi-turn ids must differ from the benchmark's"
                    )
                seen[q.question_id] = path
                rec: dict[str, Any] = {"question_id": q.question_id}
                if q.category is not None:
                    rec["category"] = q.category
                rec["turns"] = list(q.turns)
                lines.append(json.dumps(rec, ensure_ascii=False))
        target = self.output / "questions.jsonl"
        text = "\n".join(lines) + "\n"
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            from mentalchat.io import atomic_path

            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                Path(tmp).write_text(text, encoding="utf-8")
        return target

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

    # -- keys ------------------------------------------------------------------------------------
    def key(self, stage: Stage, ctx: _Context) -> str:
        """The stage's config hash chained with the keys (or fingerprints) of everything it reads."""
        cfg = self.plan.configs[stage.name]
        return _digest(stage.name, config_hash(cfg), stage.input_fingerprints(cfg, ctx))

    def can_skip(self, stage: Stage, key: str) -> bool:
        rec = self.state["stages"].get(stage.name) or {}
        if rec.get("status") != "done" or rec.get("key") != key:
            return False
        folder = self.folder(stage.name)
        marker = read_done_marker(folder)
        if marker is None or marker.get("stage") != stage.name or marker.get("config_hash") != rec.get("marker_hash"):
            return False
        return all((folder / name).exists() for name in stage.outputs_for(self.plan.configs[stage.name]))

    # -- Ray -------------------------------------------------------------------------------------
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

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> PipelineResult:
        t_start = time.perf_counter()
        results: list[StageResult] = []
        n = len(self.p.stages)
        for i, name in enumerate(self.p.stages, 1):
            stage = get_stage(name)
            cfg = self.plan.configs[name]
            ctx = _Context(self, name)
            key = self.key(stage, ctx)
            self.keys[name] = key
            folder = ctx.folder
            if self.can_skip(stage, key):
                facts = dict((self.state["stages"].get(name) or {}).get("facts") or {})
                self.echo(f"==> [{i}/{n}] {name}: skipped (output complete, config and inputs unchanged) "
                          f"-> {folder}")
                results.append(StageResult(name, folder, "skipped", 0.0, key, facts))
                continue
            self.echo(f"==> [{i}/{n}] {name} -> {folder}")
            if stage.needs_ray(cfg, ctx):
                self.ensure_ray()
            self.state["stages"][name] = {"status": "running", "key": key}
            self._save_state()
            t0 = time.perf_counter()
            try:
                facts = stage.run(cfg, ctx)
            except BaseException as exc:
                secs = time.perf_counter() - t0
                self.state["stages"][name] = {"status": "failed", "key": key, "seconds": round(secs, 1),
                                              "error": f"{type(exc).__name__}: {exc}"[:2000]}
                self._save_state()
                self.echo(f"==> [{i}/{n}] {name} FAILED after {secs:.1f} s: {type(exc).__name__}: {exc}")
                self.echo("    rerun the same command to resume: finished stages are skipped")
                raise
            secs = time.perf_counter() - t0
            stage.after_run(ctx)
            marker = read_done_marker(folder) or {}
            self.state["stages"][name] = {
                "status": "done", "key": key, "marker_hash": marker.get("config_hash"),
                "seconds": round(secs, 1), "facts": facts,
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self._save_state()
            self.echo(f"==> [{i}/{n}] {name} done in {secs:.1f} s")
            results.append(StageResult(name, folder, "ran", secs, key, facts))
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


PAPER_REPORT_DIR = "paper-report"


def _paper_reference(plan: PipelinePlan, output: Path, echo: Callable[[str], None]) -> Path:
    """The paper's tables from the bundled authors' scores, in their own folder (cheap: seconds)."""
    import tempfile

    from mentalchat.core.paper_scores import PAPER_REPORT_TITLE, read_paper_scores
    from mentalchat.schemas import write_table
    from mentalchat.stats.config import StatsConfig
    from mentalchat.stats.run import run_stats

    base = plan.configs.get("stats")
    cfg = (base if isinstance(base, StatsConfig) else StatsConfig()).model_copy(
        update={"report_title": PAPER_REPORT_TITLE})
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mentalchat-paper-") as tmp:
        scores = write_table(read_paper_scores(), Path(tmp) / "judgments.parquet", "judgments")
        res = run_stats(cfg, output / PAPER_REPORT_DIR, judgments=[scores])
    echo(f"==> paper reference: the authors' published judge scores -> {res.report_md} "
         f"({time.monotonic() - t0:.1f} s)")
    return res.report_md


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
            if plan.pipeline.paper_reference:
                result.paper_report = _paper_reference(plan, output, echo)
    finally:
        if driver.started_ray and shutdown_ray:
            import ray

            ray.shutdown()
    from mentalchat.pipeline.summary import write_summary

    write_summary(result, plan)
    return result
