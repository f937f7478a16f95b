"""The Stage registry: every built-in stage describes itself once, and the pipeline's list matches it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mentalchat.config import StrictModel, load_stage_config
from mentalchat.core.stage import STAGE_MODULES, Stage, get_stage, stage_names
from mentalchat.errors import UsageError
from mentalchat.pipeline.config import STAGES, StageDirs

REPO = Path(__file__).resolve().parents[2]


def test_every_built_in_stage_is_registered_complete() -> None:
    assert stage_names()[: len(STAGE_MODULES)] == STAGES  # the pipeline runs them in registry order
    for name in STAGES:
        stage = get_stage(name)
        assert isinstance(stage, Stage) and stage.name == name
        assert issubclass(stage.config_class, StrictModel)
        assert stage.outputs, f"{name}: the resume check needs the files later stages read"
        assert (REPO / "jobs" / f"{stage.job}.py").is_file(), f"{name}: jobs/{stage.job}.py is missing"
        assert stage.summary and stage.usage
        assert set(stage.reads) <= set(STAGES) and STAGES.index(name) > max(
            (STAGES.index(r) for r in stage.reads), default=-1
        ), f"{name} reads a later stage"
        assert hasattr(StageDirs(), name)
        parser = argparse.ArgumentParser()
        stage.add_arguments(parser)
        assert "--output" in parser.format_help()


def test_unknown_stage_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="unknown stage 'judging'; known: dataset, finetune"):
        get_stage("judging")


def test_stage_config_loading_matches_the_shared_loader() -> None:
    """A stage's own loader gives what load_stage_config gives, plus its prepare step (judge: paths)."""
    for name in STAGES:
        stage = get_stage(name)
        mine = stage.load_config(REPO / "configs" / "smoke.yaml", [])
        theirs = load_stage_config(stage.config_class, REPO / "configs" / "smoke.yaml", [], section=name)
        assert mine == stage.prepare_config(theirs, (REPO / "configs").resolve())
