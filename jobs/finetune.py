"""Stage 2: QLoRA fine-tuning on Ray Train, one Ray Tune experiment over models × data configurations.

    python jobs/finetune.py --config configs/paper.yaml --dataset DIR --output DIR [key=value ...]
    ray job submit --working-dir . -- python jobs/finetune.py --config ... --dataset ... --output ...

``--dataset`` is a ``qa_pairs`` Parquet file or folder (stage 1's output). Overrides are dotted keys
relative to the finetune section (``lora.r=16``, ``train.max_steps=100``) or the file root. The
output folder gets ``adapters/<trial>/``, ``manifest.parquet`` and Ray's results (unless
``storage_path`` points elsewhere). Running the same command again resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--dataset", required=True, help="qa_pairs Parquet file or folder")
    ap.add_argument("--output", required=True)
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from mentalchat.config import ConfigError, load_stage_config
    from mentalchat.finetune.config import FinetuneConfig
    from mentalchat.finetune.tune import FinetuneError, run_finetune
    from mentalchat.schemas import SchemaError

    try:
        cfg = load_stage_config(FinetuneConfig, args.config, args.overrides, section="finetune")
        manifest = run_finetune(cfg, args.dataset, args.output)
    except (ConfigError, SchemaError, ValueError, FileNotFoundError, FinetuneError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{manifest.num_rows} adapters -> {args.output} (manifest.parquet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
