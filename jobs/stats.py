"""Stage 5: means with bootstrap CIs, gains over base models, wins, agreement, report.

    python jobs/stats.py --config configs/paper.yaml --judgments runs/judge/judgments.parquet \
        --output runs/stats
    python jobs/stats.py --config configs/paper.yaml --fastchat ../shared/mentalchat16k/fastchat \
        --output runs/paper-stats
    python jobs/stats.py --config C --judgments J.parquet --human ratings.csv \
        --dataset runs/ds/qa_pairs.parquet --output DIR bootstrap=2000

Judgments come from our Parquet tables (--judgments), FastChat data folders holding
model_judgment*/ (--fastchat), human-rating CSVs (--human), or any mix. Overrides are dotted keys
relative to the stats section (``bootstrap=200``) or the file root.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--judgments", nargs="+", default=[], help="judgments Parquet files or folders")
    ap.add_argument("--fastchat", nargs="+", default=[], help="FastChat data folders (model_judgment*/)")
    ap.add_argument("--human", nargs="+", default=[], help="human-rating CSV files")
    ap.add_argument("--dataset", help="qa_pairs Parquet, for the dataset section of the report")
    ap.add_argument("--output", required=True)
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not (args.judgments or args.fastchat or args.human):
        ap.error("give at least one of --judgments, --fastchat, --human")

    from mentalchat.config import ConfigError, load_stage_config
    from mentalchat.schemas import SchemaError
    from mentalchat.stats.config import StatsConfig
    from mentalchat.stats.run import run_stats

    try:
        cfg = load_stage_config(StatsConfig, args.config, args.overrides, section="stats")
        result = run_stats(cfg, args.output, judgments=args.judgments, fastchat=args.fastchat,
                           human=args.human, dataset=args.dataset)
    except (ConfigError, SchemaError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"tables: {', '.join(sorted(result.tables))} -> {result.output}")
    print(f"report: {result.report_md} and {result.report_html}")
    if result.unmapped:
        print(f"models without base/configuration (not in gains or wins): {', '.join(result.unmapped)}")
    print(f"took {result.timings.get('total', 0):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
