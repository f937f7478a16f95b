"""Stage 4 as the pipeline and ``mentalchat judge`` see it (``jobs/judge.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mentalchat.core.cli import init_ray
from mentalchat.core.stage import Stage, StageContext, register_stage
from mentalchat.errors import UsageError
from mentalchat.judge.config import JudgeConfig

__all__ = ["JudgeStage"]


@register_stage
class JudgeStage(Stage):
    name = "judge"
    job = "judge"
    summary = "score answers with LLM judges on the seven metrics (and import human ratings)"
    usage = """\
examples:
  python jobs/judge.py --config configs/paper.yaml --questions QUESTIONS --answers ANSWERS... --output DIR [key=value ...]
  python jobs/judge.py --config C --questions Q --answers A --output DIR --dry-run
  python jobs/judge.py --config C --human-ratings ratings.csv --output DIR

Overrides are dotted keys relative to the judge section (budget_usd=5) or the file root
(engines.gpt4-judge.base_url=http://127.0.0.1:8000/v1). Rerunning with the same output folder
resumes: finished calls are not repeated."""
    config_class = JudgeConfig
    reads = ("generate",)
    outputs = ("judgments.parquet",)

    def outputs_for(self, cfg: JudgeConfig) -> tuple[str, ...]:
        """Pairwise judging adds its table and the reliability table that holds its position bias."""
        if cfg.pairwise.enabled:
            return (*self.outputs, "pairwise.parquet", "reliability.parquet")
        return self.outputs

    def prepare_config(self, cfg: JudgeConfig, config_dir: Path) -> JudgeConfig:
        return cfg.resolve_paths(config_dir)

    # -- in a pipeline ----------------------------------------------------------------------------
    def input_fingerprints(self, cfg: JudgeConfig, ctx: StageContext) -> dict[str, Any]:
        return {"questions": ctx.fingerprint(ctx.questions_path()), "answers": ctx.key_of("generate")}

    def needs_ray(self, cfg: JudgeConfig, ctx: StageContext | None = None) -> bool:
        return cfg.executor == "ray"

    def run(self, cfg: JudgeConfig, ctx: StageContext) -> dict[str, Any]:
        from mentalchat.judge.run import run_judge

        answers = ctx.folder_of("generate") / "answers.parquet"
        js = run_judge(cfg, ctx.questions_path(), [answers], ctx.folder, progress=ctx.progress, echo=ctx.echo)
        return {"planned": js.planned, "scored": js.scored, "failed": js.failed, "calls": js.called,
                "spent_usd": round(js.spent_usd, 4), "failures": js.failures}

    def describe(self, facts: dict[str, Any], folder: Path, show: Callable[[Path], str]) -> tuple[str, str]:
        return show(folder / "judgments.parquet"), (
            f"{facts.get('scored', '?')} of {facts.get('planned', '?')} judge calls scored, {facts.get('failed', '?')} failed"
            f" (${facts.get('spent_usd', 0):.4f}); also reliability.parquet, crisis.parquet"
            + (", pairwise.parquet" if (folder / "pairwise.parquet").exists() else "")
        )

    # -- on the command line ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--questions", help="FastChat question.jsonl or Parquet")
        parser.add_argument("--answers", nargs="+", default=[],
                            help="answers Parquet and/or FastChat model_answer JSONL (files or folders)")
        parser.add_argument("--human-ratings", help="import a human-ratings CSV into the judgments table instead of judging")
        parser.add_argument("--output", required=True)
        parser.add_argument("--dry-run", action="store_true", help="print the calls and estimated cost; call nothing")
        parser.add_argument("--no-progress", action="store_true")
        check = parser.add_mutually_exclusive_group()
        check.add_argument("--preflight", dest="preflight", action="store_const", const="always",
                           help="one check call per (engine, prompt version) before the sweep, whatever it costs "
                                "(default: only above judge.preflight_min_cost_usd)")
        check.add_argument("--no-preflight", dest="preflight", action="store_const", const="never")

    def run_command(self, cfg: JudgeConfig, args: argparse.Namespace) -> int:
        if args.human_ratings:
            from mentalchat.judge.human import import_human_ratings

            path = import_human_ratings(args.human_ratings, args.output)
            print(f"human ratings written to {path}")
            return 0
        if not args.questions or not args.answers:
            raise UsageError("--questions and --answers are required (unless --human-ratings)")
        from mentalchat.judge.run import run_judge

        if cfg.executor == "ray" and not args.dry_run:
            init_ray()
        summary = run_judge(
            cfg, args.questions, args.answers, args.output, dry_run=args.dry_run, progress=not args.no_progress,
            preflight=args.preflight,
        )
        if not args.dry_run:
            print(
                f"judged {summary.planned} items: {summary.scored} scored, {summary.failed} failed "
                f"({summary.already_done} were already done, {summary.called} calls made, "
                f"${summary.spent_usd:.4f} spent) -> {args.output}"
            )
            if summary.failures:
                print(f"failures by kind: {summary.failures}")
        return 0
