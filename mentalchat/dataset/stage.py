"""Stage 1 as the pipeline and ``mentalchat dataset`` see it (``jobs/build_dataset.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mentalchat.core.cli import init_ray
from mentalchat.core.stage import Stage, StageContext, register_stage
from mentalchat.dataset.config import DatasetConfig

__all__ = ["DatasetStage"]


@register_stage
class DatasetStage(Stage):
    name = "dataset"
    job = "build_dataset"
    summary = "build the counselling QA dataset from interview transcripts and/or synthetic calls"
    usage = """\
examples:
  python jobs/build_dataset.py --config configs/quickstart.yaml --transcripts DIR --output DIR [key=value ...]
  python jobs/build_dataset.py --config configs/paper.yaml --output DIR synthetic.enabled=true --dry-run

--transcripts is a folder of .txt (speaker-labelled lines, form feeds between pages), .jsonl (one
page or turn per line) and .docx files; it overrides dataset.interview.transcripts ("bundled" =
the shipped fictional samples). Pages are de-identified before and after the local paraphrasing
model; a non-local paraphrase engine is refused unless
interview.allow_remote_paraphrase_i_accept_phi_leaves_cluster=true. Overrides are dotted keys
relative to the dataset section (interview.min_words=30) or the file root. --dry-run prints the
number of calls and the estimated cost and calls nothing. Rerunning the synthetic path with the
same output repeats no call that had finished. The card counts pairs whose input near-duplicates
a benchmark question (--questions; dataset.decontamination), which fine-tuning then drops."""
    config_class = DatasetConfig
    outputs = ("qa_pairs.parquet",)

    # -- in a pipeline ----------------------------------------------------------------------------
    def input_fingerprints(self, cfg: DatasetConfig, ctx: StageContext) -> dict[str, Any]:
        from mentalchat.core.decontamination import reference_path
        from mentalchat.dataset.build import resolve_transcripts

        folder = resolve_transcripts(cfg, ctx.transcripts) if cfg.interview.enabled else None
        out = {"transcripts": ctx.fingerprint(folder)}
        if cfg.decontamination.enabled:
            out["decontamination"] = ctx.fingerprint(reference_path(cfg.decontamination, ctx.questions_path()))
        return out

    def needs_ray(self, cfg: DatasetConfig, ctx: StageContext | None = None) -> bool:
        return True  # interview actors and vLLM engines run as Ray tasks

    def run(self, cfg: DatasetConfig, ctx: StageContext) -> dict[str, Any]:
        from mentalchat.dataset.build import build_dataset

        stats = build_dataset(cfg, ctx.folder, transcripts=ctx.transcripts, echo=ctx.echo,
                              benchmark=ctx.questions_path())
        return {"pairs": stats["pairs"], "rejected": stats["rejected"],
                "crisis_flagged": stats.get("crisis", {}).get("flagged"),
                "benchmark_overlap": (stats.get("decontamination") or {}).get("flagged")}

    def describe(self, facts: dict[str, Any], folder: Path, show: Callable[[Path], str]) -> tuple[str, str]:
        what = f"{facts.get('pairs', '?')} QA pairs, {facts.get('rejected', '?')} rejected; card {show(folder / 'README.md')}"
        return show(folder / "qa_pairs.parquet"), what

    # -- on the command line ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--transcripts", help="folder of transcripts (.txt, .jsonl, .docx)")
        parser.add_argument("--output", required=True)
        parser.add_argument("--dry-run", action="store_true", help="print calls and estimated cost, call nothing")
        parser.add_argument("--questions", help="benchmark questions the card's decontamination count checks "
                            "against (default: dataset.decontamination.against, the bundled sample questions)")
        check = parser.add_mutually_exclusive_group()
        check.add_argument("--preflight", dest="preflight", action="store_const", const="always",
                           help="synthetic path: one check call before the sweep, whatever it costs "
                                "(default: only above dataset.synthetic.preflight_min_cost_usd)")
        check.add_argument("--no-preflight", dest="preflight", action="store_const", const="never")
        parser.add_argument("--push-to-hub", metavar="REPO", help="after the build, upload the folder to the "
                            "Hugging Face Hub as dataset REPO (token from $HF_TOKEN; refused unless the leak "
                            "gate passed on the interview text)")
        parser.add_argument("--public", action="store_true", help="with --push-to-hub: a public repo (default private)")

    def run_command(self, cfg: DatasetConfig, args: argparse.Namespace) -> int:
        from mentalchat.dataset.build import build_dataset, resolve_transcripts

        interview = cfg.interview.enabled and resolve_transcripts(cfg, args.transcripts) is not None
        engines = (cfg.interview.paraphrase_engine if interview else None,
                   cfg.synthetic.engine if cfg.synthetic.enabled else None)
        vllm = any(cfg.engines[n].backend == "vllm" for n in engines if n)
        if not args.dry_run and ((interview and cfg.interview.executor == "ray") or vllm):
            init_ray()
        if getattr(args, "preflight", None):
            cfg = cfg.model_copy(update={"synthetic": cfg.synthetic.model_copy(update={"preflight": args.preflight})})
        stats = build_dataset(cfg, args.output, transcripts=args.transcripts, dry_run=args.dry_run,
                              benchmark=args.questions)
        if not args.dry_run:
            print(f"{stats['pairs']} pairs, {stats['rejected']} rejected -> {args.output} "
                  f"(qa_pairs.parquet, rejects.parquet, pages.parquet, README.md)")
            if args.push_to_hub:
                from mentalchat.dataset.hub import push_to_hub

                print(f"pushed to {push_to_hub(args.output, args.push_to_hub, private=not args.public)}")
        return 0
