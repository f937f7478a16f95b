"""``mentalchat pipeline`` / ``jobs/pipeline.py``: every stage in order, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from mentalchat.core.cli import ErrorPolicy

__all__ = ["PipelineCommand", "SMOKE_CONFIG"]

#: ``--smoke``: tiny random models, seconds per stage.
SMOKE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


class PipelineCommand:
    name = "pipeline"
    summary = "the whole pipeline: build_dataset -> finetune -> generate -> judge -> stats, resumable"
    usage = """\
examples:
  python jobs/pipeline.py --config configs/quickstart.yaml --output runs/quickstart [key=value ...]
  python jobs/pipeline.py --smoke --output runs/smoke          # = --config configs/smoke.yaml
  ray job submit --working-dir . -- python jobs/pipeline.py --config configs/paper.yaml --output /shared/runs/paper

Each stage writes a sub-folder of --output (pipeline.dirs). Running the same command again skips
every stage whose output is complete and whose config and inputs did not change, and resumes the
first one that did not finish. Overrides are dotted paths from the file's root
(finetune.train.max_steps=4, pipeline.stages=[generate,judge,stats])."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        src = parser.add_mutually_exclusive_group(required=True)
        src.add_argument("--config", help="YAML config with a section per stage (and pipeline:)")
        src.add_argument("--smoke", action="store_true", help="--config configs/smoke.yaml (tiny random models)")
        parser.add_argument("--output", required=True, help="run folder (local or shared filesystem)")
        parser.add_argument("--no-progress", action="store_true", help="no judge progress bar")
        parser.add_argument("--verbose", action="store_true", help="log every HTTP request and retry")
        parser.add_argument("overrides", nargs="*", help="key=value config overrides (dotted from the file's root)")

    def run(self, args: argparse.Namespace, policy: ErrorPolicy) -> int:
        from mentalchat.pipeline import format_summary, load_pipeline, run_pipeline

        plan = load_pipeline(args.config or str(SMOKE_CONFIG), args.overrides)
        policy.watch(plan.configs.values())
        result = run_pipeline(plan, args.output, progress=not args.no_progress)
        print(format_summary(result), flush=True)
        return 0
