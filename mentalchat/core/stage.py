"""The Stage protocol: what the pipeline and the command line need to know about a stage.

Why: the driver used to keep what each stage needs in parallel tables and if-chains (required
files, config classes, keys, Ray, how to run it, how to summarise it). Now each stage package
describes itself once, in a :class:`Stage` subclass registered under its name
(``mentalchat/<stage>/stage.py``), and the pipeline, the summary and ``mentalchat <stage>``
iterate the registry. A stage sees the run that drives it only through :class:`StageContext`,
so stage packages never import the pipeline (or each other).

Read a stage top to bottom: its config class, what it reads and writes, how its inputs are
fingerprinted (the pipeline's resume key), whether it needs Ray, ``run`` (returns the headline
facts the summary prints), ``describe`` (those facts as one line) and its command line.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

from mentalchat.config import StrictModel, apply_overrides, load_config_dict, section_config
from mentalchat.errors import UsageError

__all__ = [
    "STAGE_MODULES",
    "Stage",
    "StageContext",
    "get_stage",
    "register_stage",
    "stage_names",
]

#: The built-in stages in pipeline order, and the module that registers each.
STAGE_MODULES: dict[str, str] = {
    "dataset": "mentalchat.dataset.stage",
    "finetune": "mentalchat.finetune.stage",
    "generate": "mentalchat.generate.stage",
    "judge": "mentalchat.judge.stage",
    "stats": "mentalchat.stats.stage",
}


class StageContext(Protocol):
    """What a stage sees of the run driving it (the pipeline implements it)."""

    #: This stage's output folder.
    folder: Path
    echo: Callable[[str], None]
    progress: bool
    #: The run's transcript folder override, human-rating CSVs and FastChat folders.
    transcripts: str | None
    human: list[str]
    fastchat: list[str]

    def runs(self, stage: str) -> bool:
        """Whether ``stage`` is part of this run."""

    def folder_of(self, stage: str) -> Path:
        """Another stage's output folder in this run."""

    def upstream_key(self, stage: str, external: Path | None) -> str | None:
        """The key of ``stage`` when it runs here, else the fingerprint of the ``external`` input used instead."""

    def key_of(self, stage: str) -> str | None:
        """The key of a stage of this run computed so far (None when it does not run)."""

    def fingerprint(self, path: str | Path | None) -> str | None:
        """Content hash of a file, or a folder's listing (see :func:`mentalchat.pipeline.run.fingerprint`)."""

    def questions_path(self) -> Path:
        """The benchmark questions of this run."""

    def dataset_file(self) -> Path | None:
        """The ``qa_pairs`` file this run trains on (stage 1's, or the configured one)."""

    def adapters(self) -> Path | None:
        """The fine-tuning output this run answers with (stage 2's, or the configured one)."""


class Stage:
    """Base class of a stage; subclasses set the class attributes and implement ``run``.

    The defaults say: no Ray, no inputs to fingerprint, nothing to do after the run.
    """

    #: The stage's name: its config section, its pipeline entry and its ``mentalchat`` command.
    name: ClassVar[str]
    #: ``jobs/<job>.py`` runs this stage (for ``ray job submit``).
    job: ClassVar[str]
    #: One line for ``--help`` and the docs.
    summary: ClassVar[str]
    #: Usage examples and notes shown by ``--help``.
    usage: ClassVar[str] = ""
    config_class: ClassVar[type[StrictModel]]
    #: Stages whose outputs this one reads in a pipeline run.
    reads: ClassVar[tuple[str, ...]] = ()
    #: Files of its folder that later stages (and the resume check) need; all must exist to skip it.
    outputs: ClassVar[tuple[str, ...]] = ()

    # -- config ---------------------------------------------------------------------------------
    def prepare_config(self, cfg: Any, config_dir: Path) -> Any:
        """Finish a validated config (e.g. resolve paths relative to the config file)."""
        return cfg

    def config_from_doc(self, doc: dict[str, Any], source: str | Path) -> Any:
        """This stage's section of an already loaded config document, validated and prepared."""
        cfg = section_config(self.config_class, doc, self.name, source=str(source))
        return self.prepare_config(cfg, Path(source).resolve().parent)

    def load_config(self, path: str | Path, overrides: list[str] | None = None) -> Any:
        """This stage's config from a YAML file plus ``key=value`` overrides (relative to its section or the root)."""
        doc = apply_overrides(load_config_dict(path), overrides or [], section=self.name)
        return self.config_from_doc(doc, path)

    # -- in a pipeline ----------------------------------------------------------------------------
    def input_fingerprints(self, cfg: Any, ctx: StageContext) -> dict[str, Any]:
        """What the stage reads, as keys or fingerprints: part of its resume key."""
        return {}

    def outputs_for(self, cfg: Any) -> tuple[str, ...]:
        """The files this configuration must leave (``outputs`` plus optional tables it turns on)."""
        return self.outputs

    def needs_ray(self, cfg: Any, ctx: StageContext | None = None) -> bool:
        """Whether the stage runs Ray work (the pipeline then joins or starts a cluster first)."""
        return False

    def run(self, cfg: Any, ctx: StageContext) -> dict[str, Any]:
        """Run into ``ctx.folder``; return the headline facts (JSON-able) the summary prints."""
        raise NotImplementedError

    def after_run(self, ctx: StageContext) -> None:  # noqa: B027 - optional hook
        """Clean up what the run leaves behind that would hold up the next stage."""

    def describe(self, facts: dict[str, Any], folder: Path, show: Callable[[Path], str]) -> tuple[str, str]:
        """(main output, what it holds) for the run summary; ``show`` formats a path for the reader."""
        return show(folder), ", ".join(f"{k} {v}" for k, v in sorted(facts.items()))

    # -- on the command line ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The stage's own options (``--config``, ``--verbose`` and the overrides are added for it)."""

    def run_command(self, cfg: Any, args: argparse.Namespace) -> int:
        """``mentalchat <stage>`` / ``jobs/<job>.py`` after the config loaded; returns the exit code."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<stage {self.name}>"


_REGISTRY: dict[str, Stage] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make ``cls`` the stage of its name."""
    _REGISTRY[cls.name] = cls()
    return cls


def get_stage(name: str) -> Stage:
    """The registered stage ``name`` (a built-in one is imported on first use)."""
    if name not in _REGISTRY and name in STAGE_MODULES:
        importlib.import_module(STAGE_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown stage {name!r}; known: {', '.join(stage_names())}") from None


def stage_names() -> tuple[str, ...]:
    """Built-in stages in pipeline order, then any registered elsewhere."""
    return (*STAGE_MODULES, *(n for n in _REGISTRY if n not in STAGE_MODULES))
