"""Stage 1: build the counselling QA dataset from interview transcripts and/or synthetic calls.

    python jobs/build_dataset.py --config configs/quickstart.yaml --transcripts DIR --output DIR [key=value ...]
    python jobs/build_dataset.py --config configs/paper.yaml --output DIR synthetic.enabled=true --dry-run

``--transcripts`` is a folder of .txt (speaker-labelled lines, form feeds between pages), .jsonl
(one page or turn per line) and .docx files; it overrides ``dataset.interview.transcripts``
(``bundled`` = the shipped fictional samples). Pages are de-identified before and after the local
paraphrasing model; a non-local paraphrase engine is refused unless
``interview.allow_remote_paraphrase_i_accept_phi_leaves_cluster=true``. Overrides are dotted keys
relative to the dataset section (``interview.min_words=30``) or the file root. ``--dry-run``
prints the number of calls and the estimated cost and calls nothing. Rerunning the synthetic path
with the same output repeats no call that had finished.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--transcripts", help="folder of transcripts (.txt, .jsonl, .docx)")
    ap.add_argument("--output", required=True)
    ap.add_argument("--dry-run", action="store_true", help="print calls and estimated cost, call nothing")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from mentalchat.config import ConfigError, load_stage_config
    from mentalchat.dataset.build import BuildError, build_dataset, resolve_transcripts
    from mentalchat.dataset.config import DatasetConfig
    from mentalchat.schemas import SchemaError

    try:
        cfg = load_stage_config(DatasetConfig, args.config, args.overrides, section="dataset")
        interview = cfg.interview.enabled and resolve_transcripts(cfg, args.transcripts) is not None
        vllm = any(cfg.engines[n].backend == "vllm" for n in (
            cfg.interview.paraphrase_engine if interview else None,
            cfg.synthetic.engine if cfg.synthetic.enabled else None) if n)
        needs_ray = not args.dry_run and ((interview and cfg.interview.executor == "ray") or vllm)
        if needs_ray:
            import ray

            ray.init(ignore_reinit_error=True, log_to_driver=False, configure_logging=False)
        stats = build_dataset(cfg, args.output, transcripts=args.transcripts, dry_run=args.dry_run)
    except (ConfigError, SchemaError, BuildError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.dry_run:
        print(f"{stats['pairs']} pairs, {stats['rejected']} rejected -> {args.output} "
              f"(qa_pairs.parquet, rejects.parquet, pages.parquet, README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
