"""Stage 2 as the pipeline and ``mentalchat finetune`` see it (``jobs/finetune.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mentalchat.core.stage import Stage, StageContext, register_stage
from mentalchat.errors import UsageError
from mentalchat.finetune.config import FinetuneConfig

__all__ = ["FinetuneStage"]


@register_stage
class FinetuneStage(Stage):
    name = "finetune"
    job = "finetune"
    summary = "QLoRA fine-tuning on Ray Train, one Ray Tune experiment over models x data configurations"
    usage = """\
examples:
  python jobs/finetune.py --config configs/paper.yaml --dataset DIR --output DIR [key=value ...]
  ray job submit --working-dir . -- python jobs/finetune.py --config ... --dataset ... --output ...

--dataset is a qa_pairs Parquet file, a dataset folder (stage 1's or import-dataset's output: its
qa_pairs.parquet is used) or a MentalChat16K-format CSV/JSONL file (instruction, input, output).
The multiturn data configuration adds the dialogues with split 'train' (dialogues.parquet next to
qa_pairs.parquet, or dialogues=PATH) to every pair, trained with the loss on counsellor turns.
Pairs whose input near-duplicates a benchmark question are dropped before splitting
(decontamination.against: benchmark = --questions, else the bundled sample questions; pool; or a
file) and listed in <output>/decontamination.json. Overrides are dotted keys
relative to the finetune section (lora.r=16, train.max_steps=100) or the file root. The output
folder gets adapters/<trial>/, manifest.parquet and Ray's results (unless storage_path points
elsewhere). Running the same command again resumes an interrupted run."""
    config_class = FinetuneConfig
    reads = ("dataset",)
    outputs = ("manifest.parquet",)

    # -- in a pipeline ----------------------------------------------------------------------------
    def input_fingerprints(self, cfg: FinetuneConfig, ctx: StageContext) -> dict[str, Any]:
        from mentalchat.core.decontamination import reference_path

        out = {"dataset": ctx.upstream_key("dataset", ctx.dataset_file())}
        dialogues = _dialogues_input(cfg, ctx)
        if dialogues is not None:
            out["dialogues"] = ctx.fingerprint(dialogues)
        if cfg.decontamination.enabled:
            out["decontamination"] = ctx.fingerprint(reference_path(cfg.decontamination, ctx.questions_path()))
        return out

    def needs_ray(self, cfg: FinetuneConfig, ctx: StageContext | None = None) -> bool:
        return True

    def run(self, cfg: FinetuneConfig, ctx: StageContext) -> dict[str, Any]:
        from mentalchat.finetune.tune import run_finetune

        dataset = ctx.dataset_file()
        if dataset is None:
            raise UsageError("finetune: no dataset (run the dataset stage or set pipeline.dataset)")
        manifest = run_finetune(cfg, dataset, ctx.folder, benchmark=ctx.questions_path()).to_pylist()
        return {"adapters": len(manifest), "decontaminated": _removed(ctx.folder),
                "trials": {r["trial_id"]: {"steps": r["steps"], "train_loss": r["train_loss"],
                                           "eval_loss": r["eval_loss"]} for r in manifest}}

    def after_run(self, ctx: StageContext) -> None:
        from mentalchat.finetune.tune import release_trial_placement_groups

        freed = release_trial_placement_groups()
        if freed:
            ctx.echo(f"    released {freed:g} CPUs that finished Ray Train trials still held in placement groups")

    def describe(self, facts: dict[str, Any], folder: Path, show: Callable[[Path], str]) -> tuple[str, str]:
        losses = [t.get("train_loss") for t in (facts.get("trials") or {}).values() if t.get("train_loss") is not None]
        loss = f", train loss {min(losses):.3f}-{max(losses):.3f}" if losses else ""
        removed = facts.get("decontaminated")
        decon = f"; {removed} pairs near benchmark questions removed" if removed is not None else ""
        return show(folder / "manifest.parquet"), (f"{facts.get('adapters', '?')} LoRA adapters in "
                                                   f"{show(folder / 'adapters')}{loss}{decon}")

    # -- on the command line ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dataset", required=True,
                            help="qa_pairs Parquet file, dataset folder, or MentalChat16K-format CSV/JSONL")
        parser.add_argument("--output", required=True)
        parser.add_argument("--questions", help="benchmark questions to decontaminate against "
                            "(decontamination.against: benchmark; default: the bundled sample questions)")

    def run_command(self, cfg: FinetuneConfig, args: argparse.Namespace) -> int:
        from mentalchat.finetune.tune import run_finetune

        manifest = run_finetune(cfg, args.dataset, args.output, benchmark=args.questions)
        removed = _removed(Path(args.output))
        note = f"; {removed} training pairs near benchmark questions removed" if removed is not None else ""
        print(f"{manifest.num_rows} adapters -> {args.output} (manifest.parquet){note}")
        return 0


def _removed(folder: Path) -> int | None:
    """Pairs the run dropped as benchmark near-duplicates (None without decontamination)."""
    import json

    report = folder / "decontamination.json"
    return json.loads(report.read_text(encoding="utf-8"))["removed"] if report.is_file() else None


def _dialogues_input(cfg: FinetuneConfig, ctx: StageContext) -> Path | None:
    """The dialogues a multiturn run reads that no upstream key covers: the configured file, or the one
    beside an external dataset (the dataset stage's own dialogues are in its key already)."""
    from mentalchat.finetune.data import CONVERSATION_CONFIGS, DIALOGUES_FILE

    if not any(c in CONVERSATION_CONFIGS for c in cfg.data_configs):
        return None
    if cfg.dialogues:
        return Path(cfg.dialogues).expanduser()
    dataset = ctx.dataset_file()
    if ctx.runs("dataset") or dataset is None:
        return None
    beside = (dataset if dataset.is_dir() else dataset.parent) / DIALOGUES_FILE
    return beside if beside.is_file() else None
