"""Stage 3 as the pipeline and ``mentalchat generate`` see it (``jobs/generate.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mentalchat.core.cli import init_ray
from mentalchat.core.stage import Stage, StageContext, register_stage
from mentalchat.generate.config import GenerateConfig

__all__ = ["GenerateStage"]


@register_stage
class GenerateStage(Stage):
    name = "generate"
    job = "generate"
    summary = "answer the benchmark questions with base models and every fine-tuned adapter"
    usage = """\
examples:
  python jobs/generate.py --config configs/paper.yaml --questions QUESTIONS --adapters DIR --output DIR [key=value ...]

--adapters is the fine-tuning output (a folder holding the manifest, or the manifest Parquet);
leave it out to answer with the configured base models only. Overrides are dotted keys relative
to the generate section (max_questions=10) or the file root."""
    config_class = GenerateConfig
    reads = ("finetune",)
    outputs = ("answers.parquet",)

    # -- in a pipeline ----------------------------------------------------------------------------
    def input_fingerprints(self, cfg: GenerateConfig, ctx: StageContext) -> dict[str, Any]:
        return {"questions": ctx.fingerprint(ctx.questions_path()),
                "adapters": ctx.upstream_key("finetune", ctx.adapters())}

    def needs_ray(self, cfg: GenerateConfig, ctx: StageContext | None = None) -> bool:
        return cfg.executor == "ray"

    def run(self, cfg: GenerateConfig, ctx: StageContext) -> dict[str, Any]:
        from mentalchat.generate.run import run_generate

        summary = run_generate(cfg, ctx.questions_path(), ctx.folder, adapters=ctx.adapters(),
                               use_ray=cfg.executor == "ray")
        return {"answers": summary.answers, "failed": summary.failed, "models": summary.models,
                "questions": summary.questions}

    def describe(self, facts: dict[str, Any], folder: Path, show: Callable[[Path], str]) -> tuple[str, str]:
        models = facts.get("models") or []
        failed = f", {facts['failed']} failed" if facts.get("failed") else ""
        return show(folder / "answers.parquet"), (
            f"{facts.get('answers', '?')} answers from {len(models)} models to {facts.get('questions', '?')} questions"
            f"{failed}; FastChat copy in {show(folder / 'model_answer')}"
        )

    # -- on the command line ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--questions", required=True, help="FastChat question.jsonl or Parquet")
        parser.add_argument("--adapters", help="fine-tuning output folder or manifest Parquet")
        parser.add_argument("--output", required=True)

    def run_command(self, cfg: GenerateConfig, args: argparse.Namespace) -> int:
        from mentalchat.generate.run import run_generate

        if cfg.executor == "ray":
            init_ray()
        summary = run_generate(cfg, args.questions, args.output, adapters=args.adapters,
                               use_ray=cfg.executor == "ray")
        print(f"{summary.answers} answers from {len(summary.models)} models -> {args.output}"
              + (f" ({summary.failed} failed, see summary.json)" if summary.failed else ""))
        return 0
