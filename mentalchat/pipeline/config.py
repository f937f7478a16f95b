"""The ``pipeline:`` section: what the driver itself needs, nothing any stage already configures.

Each stage keeps its own section (``dataset:``, ``finetune:``, ...); this one only says which
stages run, where each writes inside ``--output``, where the benchmark questions come from and
how the driver joins Ray. Overrides are dotted paths from the file's root
(``pipeline.stages=[generate,judge,stats]``, ``finetune.train.max_steps=4``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mentalchat.config import ConfigError, StrictModel
from mentalchat.core.questions import bundled_questions

__all__ = ["STAGES", "PipelineConfig", "RayOptions", "StageDirs", "StageName", "bundled_questions"]

#: The stages a pipeline may run, in order (the registry's built-in stages; a test keeps them equal).
StageName = Literal["dataset", "finetune", "generate", "judge", "stats"]
STAGES: tuple[StageName, ...] = ("dataset", "finetune", "generate", "judge", "stats")


class StageDirs(StrictModel):
    """Sub-folders of ``--output``, one per stage."""

    dataset: str = "dataset"
    finetune: str = "finetune"
    generate: str = "answers"
    judge: str = "judgments"
    stats: str = "report"

    @field_validator("*")
    @classmethod
    def _relative(cls, value: str) -> str:
        p = Path(value)
        if not value or p.is_absolute() or ".." in p.parts:
            raise ValueError(f"{value!r}: a stage folder is a plain sub-folder name of --output")
        return value


class RayOptions(StrictModel):
    """How the driver joins Ray (a submitted job always joins the cluster it was submitted to)."""

    address: str | None = Field(
        None, description="None: RAY_ADDRESS when set (ray job submit sets it), else start a local cluster"
    )
    num_cpus: int | None = Field(
        None, ge=1, description="logical CPUs of a local cluster (more than the cores lets small tasks overlap)"
    )
    log_to_driver: bool = Field(False, description="echo every worker's log lines on the driver's console")


class PipelineConfig(StrictModel):
    """The ``pipeline:`` section."""

    stages: list[StageName] = Field(default_factory=lambda: list(STAGES), description="stages to run, in order")
    questions: str = Field(
        "bundled",
        description="benchmark questions (FastChat question.jsonl or Parquet); 'bundled' = the ten sample "
        "questions shipped with the package. Relative paths are taken from the current directory.",
    )
    multi_turn_questions: list[str] = Field(
        default_factory=list,
        description="multi-turn question files answered and judged with the benchmark questions: 'bundled' "
        "(the two-turn samples shipped with the package), 'dataset' (the dataset stage's held-out "
        "multiturn_benchmark.jsonl) or a FastChat question.jsonl path",
    )
    dirs: StageDirs = Field(default_factory=StageDirs)
    transcripts: str | None = Field(None, description="transcript folder; overrides dataset.interview.transcripts")
    dataset: str | None = Field(
        None, description="an existing qa_pairs Parquet/folder, used when the dataset stage is not in stages"
    )
    adapters: str | None = Field(
        None, description="an existing fine-tuning output (manifest), used when finetune is not in stages"
    )
    human: list[str] = Field(default_factory=list, description="human-rating CSVs passed to the stats stage")
    fastchat: list[str] = Field(
        default_factory=list, description="FastChat data folders (model_judgment*/) passed to the stats stage"
    )
    paper_reference: bool = Field(
        False, description="also render the paper's tables from the bundled numbers-only table of the authors' "
                           "judge scores into <output>/paper-report (beside this run's own report, labelled apart)")
    ray: RayOptions = Field(default_factory=RayOptions)
    env: dict[str, str] = Field(
        default_factory=dict,
        description="environment defaults for the driver and local workers (HF_HUB_OFFLINE, ...); never secrets",
    )
    notice: str | None = Field(
        None, description="printed before and after the run (e.g. that the models are tiny)"
    )

    @field_validator("stages")
    @classmethod
    def _ordered(cls, value: list[StageName]) -> list[StageName]:
        if not value:
            raise ValueError("at least one stage")
        if len(set(value)) != len(value):
            raise ValueError(f"stages repeat: {value}")
        return sorted(value, key=STAGES.index)

    def questions_path(self) -> Path:
        path = bundled_questions() if self.questions == "bundled" else Path(self.questions).expanduser()
        if not path.is_file():
            raise ConfigError(f"pipeline.questions: file not found: {path}")
        return path

    def multi_turn_paths(self, dataset_folder: Path | None) -> list[Path]:
        """The multi-turn question files that exist now ('dataset' only once that stage has written it)."""
        from mentalchat.core.questions import bundled_multiturn_questions

        out = []
        for entry in self.multi_turn_questions:
            if entry == "bundled":
                out.append(bundled_multiturn_questions())
            elif entry == "dataset":
                held_out = dataset_folder / "multiturn_benchmark.jsonl" if dataset_folder is not None else None
                if held_out is not None and held_out.is_file() and held_out.read_text(encoding="utf-8").strip():
                    out.append(held_out)  # empty when no dialogue landed in the benchmark split
            else:
                path = Path(entry).expanduser()
                if not path.is_file():
                    raise ConfigError(f"pipeline.multi_turn_questions: file not found: {path}")
                out.append(path)
        return out
