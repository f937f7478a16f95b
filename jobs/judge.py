"""Stage 4: score answers with LLM judges (and import human ratings).

    python jobs/judge.py --config configs/paper.yaml --questions QUESTIONS --answers ANSWERS... --output DIR [key=value ...]
    python jobs/judge.py --config C --questions Q --answers A --output DIR --dry-run
    python jobs/judge.py --config C --human-ratings ratings.csv --output DIR

Overrides are dotted keys relative to the judge section (``budget_usd=5``) or the file root
(``engines.gpt4-judge.base_url=http://127.0.0.1:8000/v1``). Rerunning with the same output folder
resumes: finished calls are not repeated.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--questions", help="FastChat question.jsonl or Parquet")
    ap.add_argument("--answers", nargs="+", default=[], help="answers Parquet and/or FastChat model_answer JSONL (files or folders)")
    ap.add_argument("--human-ratings", help="import a human-ratings CSV into the judgments table instead of judging")
    ap.add_argument("--output", required=True)
    ap.add_argument("--dry-run", action="store_true", help="print the calls and estimated cost; call nothing")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="log every HTTP request and retry")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # one line per request drowns the progress bar
        for name in ("httpx", "httpx2", "openai", "google_genai", "mentalchat.engine.http"):
            logging.getLogger(name).setLevel(logging.WARNING)

    from mentalchat.config import ConfigError, load_stage_config
    from mentalchat.judge.config import JudgeConfig
    from mentalchat.secrets import Scrubber

    redactor = Scrubber.from_env()
    try:
        cfg = load_stage_config(JudgeConfig, args.config, args.overrides, section="judge")
        cfg = cfg.resolve_paths(Path(args.config).resolve().parent)
        redactor = Scrubber.from_env(e.api_key_env for e in cfg.engines.values())
        if args.human_ratings:
            from mentalchat.judge.human import import_human_ratings

            path = import_human_ratings(args.human_ratings, args.output)
            print(f"human ratings written to {path}")
            return 0
        if not args.questions or not args.answers:
            ap.error("--questions and --answers are required (unless --human-ratings)")
        from mentalchat.judge.run import run_judge

        if cfg.executor == "ray" and not args.dry_run:
            import ray

            ray.init(ignore_reinit_error=True, log_to_driver=False, configure_logging=False)
        summary = run_judge(
            cfg, args.questions, args.answers, args.output, dry_run=args.dry_run, progress=not args.no_progress
        )
    except (ConfigError, ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {redactor.text(str(exc))}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - print the traceback, scrubbed of any key
        import traceback

        print(redactor.text(traceback.format_exc()), file=sys.stderr)
        return 1
    if not args.dry_run:
        print(
            f"judged {summary.planned} items: {summary.scored} scored, {summary.failed} failed "
            f"({summary.already_done} were already done, {summary.called} calls made, "
            f"${summary.spent_usd:.4f} spent) -> {args.output}"
        )
        if summary.failures:
            print(f"failures by reason: {summary.failures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
