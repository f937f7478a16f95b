"""The whole pipeline: build_dataset → finetune → generate → judge → stats, resumable.

    python jobs/pipeline.py --config configs/quickstart.yaml --output runs/quickstart [key=value ...]
    python jobs/pipeline.py --smoke --output runs/smoke          # = --config configs/smoke.yaml
    ray job submit --working-dir . -- python jobs/pipeline.py --config configs/paper.yaml --output /shared/runs/paper

Each stage writes a sub-folder of ``--output`` (``pipeline.dirs``). Running the same command again
skips every stage whose output is complete and whose config and inputs did not change, and
resumes the first one that did not finish. Overrides are dotted paths from the file's root
(``finetune.train.max_steps=4``, ``pipeline.stages=[generate,judge,stats]``).
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="YAML config with a section per stage (and pipeline:)")
    src.add_argument("--smoke", action="store_true", help="--config configs/smoke.yaml (tiny random models)")
    ap.add_argument("--output", required=True, help="run folder (local or shared filesystem)")
    ap.add_argument("--no-progress", action="store_true", help="no judge progress bar")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides (dotted from the file's root)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("httpx", "openai", "mentalchat.engine.http"):  # one line per request drowns the progress bar
        logging.getLogger(name).setLevel(logging.WARNING)

    from pathlib import Path

    from mentalchat.config import ConfigError
    from mentalchat.pipeline import format_summary, load_pipeline, run_pipeline
    from mentalchat.schemas import SchemaError
    from mentalchat.secrets import Scrubber

    config = args.config or str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
    redactor = Scrubber.from_env()
    try:
        plan = load_pipeline(config, args.overrides)
        judge_cfg = plan.configs.get("judge")
        if judge_cfg is not None:
            redactor = Scrubber.from_env(e.api_key_env for e in judge_cfg.engines.values())  # type: ignore[attr-defined]
        result = run_pipeline(plan, args.output, progress=not args.no_progress)
    except (ConfigError, SchemaError, FileNotFoundError) as exc:
        print(f"error: {redactor.text(str(exc))}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - a stage failed: its traceback, scrubbed of any key
        import traceback

        print(redactor.text(traceback.format_exc()), file=sys.stderr)
        return 1
    print(format_summary(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
