"""The run's closing summary: where the dataset, adapters, answers, judgments and report are.

Printed by ``jobs/pipeline.py`` and written to ``<output>/SUMMARY.md`` so a cluster run leaves it
next to its outputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mentalchat.core.stage import get_stage
from mentalchat.io import atomic_path

if TYPE_CHECKING:
    from mentalchat.pipeline.run import PipelinePlan, PipelineResult, StageResult

__all__ = ["SUMMARY_FILE", "format_summary", "write_summary"]

SUMMARY_FILE = "SUMMARY.md"


def _show(path: Path) -> str:
    """A path relative to the current directory when it is under it (what the user typed), else absolute."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def _describe(s: StageResult) -> tuple[str, str]:
    """(main output, what it holds) for one stage, in the stage's own words."""
    return get_stage(s.stage).describe(s.facts or {}, s.folder, _show)


def format_summary(result: PipelineResult) -> str:
    """A few lines: per stage its status, time, main output and headline figures."""
    ran, skipped = result.ran, result.skipped
    head = (f"mentalchat pipeline: {len(result.stages)} stages ({len(ran)} ran, {len(skipped)} skipped) "
            f"in {result.seconds:.1f} s -> {_show(result.output)}")
    lines = [head]
    width = max(len(s.stage) for s in result.stages)
    for s in result.stages:
        out, what = _describe(s)
        when = f"{s.seconds:7.1f} s" if s.status == "ran" else "   reused"
        lines.append(f"  {s.stage:<{width}}  {when}  {out}")
        lines.append(f"  {'':<{width}}             {what}")
    if result.ray_seconds:
        lines.append(f"  (Ray start-up: {result.ray_seconds:.1f} s)")
    if result.paper_report is not None:
        lines.append(f"  paper reference (the authors' own judge scores, not this run): {_show(result.paper_report)}")
    if result.notice:
        lines.append(f"NOTE: {result.notice}")
    return "\n".join(lines)


def write_summary(result: PipelineResult, plan: PipelinePlan) -> Path:
    """``<output>/SUMMARY.md``: the summary plus the command's config and overrides."""
    path = result.output / SUMMARY_FILE
    body = [
        "# mentalchat pipeline run",
        "",
        f"config: `{plan.source}`" + (f", overrides: `{' '.join(plan.overrides)}`" if plan.overrides else ""),
        "",
        "```",
        format_summary(result),
        "```",
        "",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(body), encoding="utf-8")
    return path
