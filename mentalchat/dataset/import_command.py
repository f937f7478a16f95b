"""``mentalchat import-dataset`` / ``jobs/import_dataset.py``: released MentalChat16K files → a dataset folder.

Why: to fine-tune on the authors' released data (``Interview_Data_6K.csv``, ``Synthetic_Data_10K.csv``)
or any set in the same three columns, it has to become our ``qa_pairs`` table with ids, sources,
provenance and the crisis audit, and it deserves the same card a built dataset gets. The folder
this writes looks like stage 1's (``qa_pairs.parquet``, ``rejects.parquet``, ``README.md`` +
figures, ``import_stats.json``, ``decontamination.json``, the done marker), so ``jobs/finetune.py
--dataset`` and ``pipeline.dataset`` take it as they take a built one.

Every input file is read and checked before anything is written (:mod:`mentalchat.core.released_data`);
the folder appears in one rename, so a bad line never leaves half an output behind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mentalchat.core.cli import ErrorPolicy, add_config_arguments
from mentalchat.core.decontamination import DecontaminationConfig, scan_pairs
from mentalchat.core.released_data import ReleasedDataError, read_released
from mentalchat.io import atomic_dir, write_done_marker, write_json_atomic
from mentalchat.safety.config import CrisisDetectorConfig
from mentalchat.safety.detector import CrisisDetector, audit_pairs
from mentalchat.schemas import QA_PAIRS, REJECTS, write_table

__all__ = ["ImportDatasetCommand", "import_dataset"]


def import_dataset(
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    source: str | None = None,
    instruction: str | None = None,
    decontamination: DecontaminationConfig | None = None,
    benchmark: str | Path | None = None,
    histogram_bins: int = 30,
    crisis_detector: CrisisDetectorConfig | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Import ``inputs`` (files or folders) into the dataset folder ``output``; returns the stats."""
    from mentalchat.dataset.card import write_card, write_histograms

    echo = echo or (lambda msg: print(msg, file=sys.stderr))
    data = read_released(inputs, source=source, instruction=instruction)
    counts = data.counts()
    if not data.pairs:
        raise ReleasedDataError(
            f"no pairs to import from {', '.join(map(str, inputs))}: {counts['rows']} rows, {counts['empty']} "
            f"with an empty input or output, {counts['duplicate']} duplicates, {counts['blank']} blank")
    options = {"source": source, "instruction": instruction,
               "decontamination": decontamination.model_dump(mode="json") if decontamination else None,
               "crisis_detector": crisis_detector.model_dump(mode="json") if crisis_detector else None}
    digest = hashlib.sha256(json.dumps([[f["sha256"] for f in data.files], options], sort_keys=True).encode())
    stats: dict[str, Any] = {"config_hash": digest.hexdigest()[:16], "pairs": len(data.pairs),
                             "rejected": len(data.rejects), "import": {**counts, "files": data.files}}
    report = None
    if decontamination is not None and decontamination.enabled:
        _, report = scan_pairs([p["id"] for p in data.pairs], [p["input"] for p in data.pairs],
                               [p["source"] for p in data.pairs], decontamination, benchmark=benchmark)
        stats["decontamination"] = {k: v for k, v in report.items() if k != "pairs"}
        echo(f"decontamination: {report['flagged']} of {report['checked']} pairs near-duplicate a question of "
             f"{report['reference']} ({report['seconds']:.1f} s)")
    # the same crisis audit as a built dataset (read_released, in core, applies the rules alone)
    detector = CrisisDetector(crisis_detector or CrisisDetectorConfig())
    for pair, audit in zip(data.pairs, audit_pairs(detector, [p["input"] for p in data.pairs],
                                                   [p["output"] for p in data.pairs]), strict=True):
        pair.update(audit)
    flagged = sum(p["crisis_flag"] for p in data.pairs)
    stats["crisis"] = {"flagged": flagged,
                       "without_escalation": sum(1 for p in data.pairs if p["crisis_escalated"] is False)}
    with atomic_dir(output) as tmp:
        write_table(QA_PAIRS.from_rows(data.pairs), tmp / "qa_pairs.parquet", QA_PAIRS)
        write_table(REJECTS.from_rows(data.rejects), tmp / "rejects.parquet", REJECTS)
        figures = write_histograms(data.pairs, tmp / "figures", bins=histogram_bins)
        write_card(tmp / "README.md", qa=data.pairs, rejects=data.rejects, stats=stats, figures=figures,
                   topic_weights=None, instruction=data.pairs[0]["instruction"],
                   built_by="imported by `mentalchat import-dataset` from released-format files")
        write_json_atomic(tmp / "import_stats.json", stats)
        if report is not None:
            write_json_atomic(tmp / "decontamination.json", report)
        write_done_marker(tmp, stage="import-dataset", config_hash=stats["config_hash"], pairs=len(data.pairs))
    echo(f"import: {counts['rows']} rows → {len(data.pairs)} pairs ({', '.join(f'{k} {v}' for k, v in counts['by_source'].items())}); "
         f"{counts['empty']} empty, {counts['duplicate']} duplicates, {counts['blank']} blank → {output}")
    return stats


class ImportDatasetCommand:
    name = "import-dataset"
    summary = "import MentalChat16K-format files (instruction, input, output) as a qa_pairs dataset folder"
    usage = """\
examples:
  python jobs/import_dataset.py --input Interview_Data_6K.csv --input Synthetic_Data_10K.csv --output runs/released
  python jobs/import_dataset.py --input my_pairs.jsonl --source synthetic --output runs/mine \\
      --questions ../shared/mentalchat16k/eval/question.jsonl

--input is a CSV, JSONL or Parquet file with instruction, input and output columns, or a folder of
them (repeatable). Each row's source is its 'source' column, else the file name (Interview... or
Synthetic...), else --source. Ids are content hashes of (input, output); page_ref is
<file>:<line>. Empty and repeated pairs go to rejects.parquet and are counted in the card. The
pairs' inputs are checked against benchmark questions (--questions, else dataset.decontamination
of --config: by default the bundled sample questions) and the overlap is reported in the card and
decontamination.json; fine-tuning drops the flagged pairs by default. Overrides are dotted keys
relative to the dataset section (decontamination.method=minhash, decontamination.enabled=false)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--input", required=True, action="append", help="CSV/JSONL/Parquet file or folder")
        parser.add_argument("--output", required=True, help="dataset folder to write (replaced atomically)")
        parser.add_argument("--source", choices=["interview", "synthetic"],
                            help="source of rows whose file has no source column and a name that says neither")
        parser.add_argument("--instruction", help="instruction for files without an instruction column")
        parser.add_argument("--questions", help="benchmark questions to check the inputs against (FastChat "
                            "question.jsonl, Parquet or CSV)")
        parser.add_argument("--config", help="config whose decontamination and crisis_detector settings to use")
        add_config_arguments(parser, config_required=False)

    def run(self, args: argparse.Namespace, policy: ErrorPolicy) -> int:
        from mentalchat.config import apply_overrides, load_config_dict, section_config
        from mentalchat.dataset.config import DatasetConfig

        doc = load_config_dict(args.config) if args.config else {"dataset": {}}
        doc = apply_overrides(doc, args.overrides, section="dataset")
        cfg = section_config(DatasetConfig, doc, "dataset", source=args.config or "<defaults>")
        policy.watch([cfg])
        stats = import_dataset(args.input, args.output, source=args.source, instruction=args.instruction,
                               decontamination=cfg.decontamination, benchmark=args.questions,
                               histogram_bins=cfg.histogram_bins,
                               crisis_detector=cfg.crisis_detector.resolve(cfg.engines))
        dec = stats.get("decontamination")
        print(f"{stats['pairs']} pairs, {stats['rejected']} rejected"
              + (f", {dec['flagged']} near benchmark questions" if dec else "")
              + f" -> {args.output} (qa_pairs.parquet, rejects.parquet, README.md)")
        return 0
