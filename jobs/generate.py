"""Stage 3: answer the benchmark questions with base models and every fine-tuned adapter.

    python jobs/generate.py --config configs/paper.yaml --questions QUESTIONS --adapters DIR --output DIR [key=value ...]

``--adapters`` is the fine-tuning output (a folder holding the manifest, or the manifest Parquet);
leave it out to answer with the configured base models only. Overrides are dotted keys relative
to the generate section (``max_questions=10``) or the file root.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--questions", required=True, help="FastChat question.jsonl or Parquet")
    ap.add_argument("--adapters", help="fine-tuning output folder or manifest Parquet")
    ap.add_argument("--output", required=True)
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from mentalchat.config import ConfigError, load_stage_config
    from mentalchat.generate.config import GenerateConfig
    from mentalchat.generate.run import run_generate

    try:
        cfg = load_stage_config(GenerateConfig, args.config, args.overrides, section="generate")
        if cfg.executor == "ray":
            import ray

            ray.init(ignore_reinit_error=True, log_to_driver=False, configure_logging=False)
        summary = run_generate(cfg, args.questions, args.output, adapters=args.adapters,
                               use_ray=cfg.executor == "ray")
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{summary.answers} answers from {len(summary.models)} models -> {args.output}"
          + (f" ({summary.failed} failed, see summary.json)" if summary.failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
