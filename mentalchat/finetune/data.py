"""Training data for stage 2: data configurations, held-out splits and token encoding.

A data configuration selects rows of the ``qa_pairs`` table by their ``source``: ``synthetic``,
``interview`` or ``combined`` (both). The held-out split is decided per row by a hash of its id,
so a row held out of ``synthetic`` is also held out of ``combined`` and no configuration evaluates
on another's training rows.

The dataset is a ``qa_pairs`` Parquet file, a folder holding ``qa_pairs.parquet`` (stage 1's or
``mentalchat import-dataset``'s output) or part files, or a MentalChat16K-format CSV/JSONL file read
by :func:`mentalchat.core.released_data.read_released`. Before splitting, pairs whose input
near-duplicates a benchmark question are dropped (:func:`decontaminate`, ``finetune.decontamination``).

Prompts are rendered by :class:`mentalchat.core.prompt_format.PromptFormatter`, the same class the
answer stage uses, so training and generation agree.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mentalchat.core.decontamination import DecontaminationConfig, scan_pairs
from mentalchat.core.prompt_format import PromptFormatter
from mentalchat.core.released_data import RELEASED_SUFFIXES, read_released
from mentalchat.errors import DataError
from mentalchat.schemas import QA_PAIRS, read_table

__all__ = [
    "DataError",
    "Split",
    "decontaminate",
    "encode_rows",
    "load_qa_pairs",
    "make_splits",
    "select_config",
    "split_table",
]

log = logging.getLogger(__name__)

SOURCES = {"synthetic": ("synthetic",), "interview": ("interview",), "combined": ("synthetic", "interview")}


def load_qa_pairs(path: str | Path) -> pa.Table:
    """Read and validate the training pairs (errors name the file).

    ``path`` is a ``qa_pairs`` Parquet file; a folder with ``qa_pairs.parquet`` in it (a dataset
    folder, whose other tables are not training data) or of ``qa_pairs`` part files; or a
    released-format CSV/JSONL file (or a folder of them), imported on the fly.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "qa_pairs.parquet").is_file():
            return read_table(path / "qa_pairs.parquet", "qa_pairs")
        if not any(path.rglob("*.parquet")) and any(p.suffix.lower() in RELEASED_SUFFIXES for p in path.iterdir()):
            return _released(path)
        return read_table(path, "qa_pairs")
    if path.suffix.lower() in (".csv", ".jsonl"):
        return _released(path)
    return read_table(path, "qa_pairs")


def _released(path: Path) -> pa.Table:
    data = read_released(path)
    counts = data.counts()
    log.info("%s: %d released-format rows → %d pairs (%d empty, %d duplicates, %d blank dropped)", path,
             counts["rows"], len(data.pairs), counts["empty"], counts["duplicate"], counts["blank"])
    if not data.pairs:
        raise DataError(f"{path}: no usable pairs ({counts['rows']} rows)", path=path)
    return QA_PAIRS.from_rows(data.pairs)


def decontaminate(
    table: pa.Table,
    cfg: DecontaminationConfig,
    *,
    benchmark: str | Path | None = None,
    source: str = "<dataset>",
) -> tuple[pa.Table, dict[str, Any] | None]:
    """Drop (or with ``remove: false`` only report) pairs whose input near-duplicates a benchmark question.

    Returns the table to train on and the report (None when disabled), which the stage logs and
    writes to ``<output>/decontamination.json``.
    """
    if not cfg.enabled:
        return table, None
    cols = table.select(["id", "input", "source"]).to_pydict()
    hits, report = scan_pairs(cols["id"], cols["input"], cols["source"], cfg, benchmark=benchmark)
    drop = {h.index for h in hits} if cfg.remove else set()
    report["removed"] = len(drop)
    report["dataset"] = source
    log.info("decontamination: %d of %d pairs of %s near-duplicate a question of %s (%s); %s",
             report["flagged"], report["checked"], source, report["reference"],
             ", ".join(f"{k} {v}" for k, v in report["flagged_by_source"].items()) or "none",
             f"removed {len(drop)}" if cfg.remove else "kept (decontamination.remove: false)")
    if drop:
        table = table.take([i for i in range(table.num_rows) if i not in drop])
    return table, report


def select_config(table: pa.Table, data_config: str, *, source: str = "<dataset>") -> pa.Table:
    """Rows of one data configuration; an empty selection is an error naming what is missing."""
    if data_config not in SOURCES:
        raise DataError(f"{source}: unknown data configuration {data_config!r}; known: {sorted(SOURCES)}")
    wanted = pa.array(list(SOURCES[data_config]))
    out = table.filter(pc.is_in(table.column("source"), value_set=wanted))
    if out.num_rows == 0:
        present = sorted(set(table.column("source").to_pylist()))
        raise DataError(
            f"{source}: data configuration {data_config!r} is empty: no rows with source in "
            f"{list(SOURCES[data_config])} (sources present: {present or 'none'})"
        )
    return out


def _unit_hash(row_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Split:
    train: pa.Table
    eval: pa.Table


def split_table(
    table: pa.Table, *, eval_fraction: float, eval_max_rows: int, seed: int, source: str = "<dataset>"
) -> Split:
    """Hold out rows whose id hashes below ``eval_fraction`` (at least one, at most ``eval_max_rows``)."""
    if table.num_rows < 2:
        raise DataError(f"{source}: needs at least 2 rows for a train/eval split, has {table.num_rows}")
    scores = [_unit_hash(i, seed) for i in table.column("id").to_pylist()]
    order = sorted(range(len(scores)), key=scores.__getitem__)
    n_eval = sum(1 for s in scores if s < eval_fraction)
    n_eval = min(max(n_eval, 1), eval_max_rows, table.num_rows - 1)
    eval_idx = sorted(order[:n_eval])
    train_idx = sorted(order[n_eval:])
    return Split(train=table.take(train_idx), eval=table.take(eval_idx))


def make_splits(
    path: str | Path,
    data_configs: list[str],
    *,
    eval_fraction: float,
    eval_max_rows: int,
    seed: int,
    table: pa.Table | None = None,
) -> dict[str, Split]:
    """Validate the dataset and split every requested configuration (all errors before any training).

    ``table``: the pairs already loaded (and decontaminated) from ``path``.
    """
    table = load_qa_pairs(path) if table is None else table
    ids = table.column("id")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        raise DataError(f"{path}: column 'id' has duplicate values")
    return {
        name: split_table(
            select_config(table, name, source=str(path)),
            eval_fraction=eval_fraction,
            eval_max_rows=eval_max_rows,
            seed=seed,
            source=f"{path} [{name}]",
        )
        for name in data_configs
    }


def encode_rows(
    formatter: PromptFormatter, table: pa.Table, *, source_max_len: int, target_max_len: int
) -> list[dict[str, list[int]]]:
    """Encode every row of a ``qa_pairs`` table for SFTTrainer (pre-tokenized prompt-completion)."""
    cols = table.select(["instruction", "input", "output"]).to_pydict()
    return [
        formatter.encode(i, x, o, source_max_len=source_max_len, target_max_len=target_max_len)
        for i, x, o in zip(cols["instruction"], cols["input"], cols["output"], strict=True)
    ]
