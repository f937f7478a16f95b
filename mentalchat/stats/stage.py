"""Stage 5 as the pipeline and ``mentalchat stats`` see it (``jobs/stats.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mentalchat.core.stage import Stage, StageContext, register_stage
from mentalchat.errors import UsageError
from mentalchat.stats.config import StatsConfig

__all__ = ["StatsStage"]


@register_stage
class StatsStage(Stage):
    name = "stats"
    job = "stats"
    summary = ("means with bootstrap CIs, gains (paired and mixed-effects), wins, agreement, length control, "
               "judge controls and crisis safety, report")
    usage = """\
examples:
  python jobs/stats.py --config configs/paper.yaml --judge-dir runs/judge --answers runs/answers/answers.parquet \\
      --output runs/stats
  python jobs/stats.py --config configs/paper.yaml --fastchat ../shared/mentalchat16k/fastchat --output runs/paper-stats
  python jobs/stats.py --config C --judgments J.parquet --human ratings.csv --dataset runs/ds/qa_pairs.parquet \\
      --output DIR bootstrap=2000

Judgments come from judge stage folders (--judge-dir: judgments.parquet, and the reliability,
crisis and pairwise tables beside it for the report's reliability and safety sections), our
Parquet tables (--judgments), FastChat data folders holding model_judgment*/ (--fastchat; their
model_answer/ gives answer lengths), human-rating CSVs (--human), or any mix. --answers (answers
Parquet or FastChat model_answer files) gives the lengths for the length-controlled scores.
Overrides are dotted keys relative to the stats section (bootstrap=200) or the file root."""
    config_class = StatsConfig
    reads = ("judge", "dataset")
    outputs = ("report.md",)

    # -- in a pipeline ----------------------------------------------------------------------------
    def input_fingerprints(self, cfg: StatsConfig, ctx: StageContext) -> dict[str, Any]:
        return {
            "judgments": ctx.key_of("judge"),
            "dataset": ctx.upstream_key("dataset", ctx.dataset_file()),
            "human": [ctx.fingerprint(h) for h in ctx.human],
            "fastchat": [ctx.fingerprint(f) for f in ctx.fastchat],
        }

    def run(self, cfg: StatsConfig, ctx: StageContext) -> dict[str, Any]:
        from mentalchat.stats.run import run_stats

        # the judge folder: judgments plus the reliability, crisis and pairwise tables beside them
        judge_dirs = [ctx.folder_of("judge")] if ctx.runs("judge") else []
        answers = ctx.folder_of("generate") / "answers.parquet" if ctx.runs("generate") else None
        dataset = ctx.dataset_file()
        result = run_stats(cfg, ctx.folder, judge_dirs=judge_dirs, fastchat=ctx.fastchat, human=ctx.human,
                           answers=[answers] if answers is not None and answers.exists() else [],
                           dataset=dataset if dataset is not None and dataset.exists() else None)
        return {"report_md": str(result.report_md), "report_html": str(result.report_html),
                "tables": sorted(result.tables), "unmapped": result.unmapped}

    def describe(self, facts: dict[str, Any], folder: Path, show: Callable[[Path], str]) -> tuple[str, str]:
        html = facts.get("report_html")
        return show(folder / "report.md"), f"tables + figures; HTML {show(Path(html)) if html else show(folder / 'report.html')}"

    # -- on the command line ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--judgments", nargs="+", default=[], help="judgments Parquet files or folders")
        parser.add_argument("--judge-dir", nargs="+", default=[], dest="judge_dir",
                            help="judge stage folders (judgments + reliability, crisis, pairwise tables)")
        parser.add_argument("--answers", nargs="+", default=[],
                            help="answers Parquet or FastChat model_answer files/folders (answer lengths)")
        parser.add_argument("--fastchat", nargs="+", default=[], help="FastChat data folders (model_judgment*/)")
        parser.add_argument("--human", nargs="+", default=[], help="human-rating CSV files")
        parser.add_argument("--dataset", help="qa_pairs Parquet, for the dataset section of the report")
        parser.add_argument("--output", required=True)

    def run_command(self, cfg: StatsConfig, args: argparse.Namespace) -> int:
        from mentalchat.stats.run import run_stats

        if not (args.judgments or args.judge_dir or args.fastchat or args.human):
            raise UsageError("give at least one of --judgments, --fastchat, --human (or --judge-dir)")
        result = run_stats(cfg, args.output, judgments=args.judgments, fastchat=args.fastchat,
                           human=args.human, dataset=args.dataset, judge_dirs=args.judge_dir,
                           answers=args.answers)
        print(f"tables: {', '.join(sorted(result.tables))} -> {result.output}")
        print(f"report: {result.report_md} and {result.report_html}")
        if result.unmapped:
            print(f"models without base/configuration (not in gains or wins): {', '.join(result.unmapped)}")
        print(f"took {result.timings.get('total', 0):.1f} s")
        return 0
