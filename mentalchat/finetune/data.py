"""Training data for stage 2: data configurations, held-out splits and token encoding.

A data configuration selects rows of the ``qa_pairs`` table by their ``source``: ``synthetic``,
``interview`` or ``combined`` (both); ``multiturn`` is every pair of both sources plus the
conversations of the ``dialogues`` table with ``split == "train"`` (:func:`with_dialogues`; its
benchmark dialogues are never trained on), single- and multi-turn rows mixed in one set. The
held-out split is decided per row by a hash of its id, so a row held out of ``synthetic`` is also
held out of ``combined`` (and of ``multiturn``) and no configuration evaluates on another's
training rows.

The dataset is a ``qa_pairs`` Parquet file, a folder holding ``qa_pairs.parquet`` (stage 1's or
``mentalchat import-dataset``'s output) or part files, or a MentalChat16K-format CSV/JSONL file read
by :func:`mentalchat.core.released_data.read_released`. Before splitting, pairs whose input
near-duplicates a benchmark question are dropped (:func:`decontaminate`, ``finetune.decontamination``).

Dialogues are found as ``dialogues.parquet`` next to the dataset's ``qa_pairs.parquet`` or at
``finetune.dialogues`` (:func:`find_dialogues`). In the training table a dialogue row carries its
``messages`` (null for a pair) and the source ``dialogue:<source>``, and its ``input`` is its
client turns, so decontamination checks every client turn.

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
from mentalchat.schemas import DIALOGUES, QA_PAIRS, read_table

__all__ = [
    "DataError",
    "Split",
    "decontaminate",
    "dialogue_rows",
    "encode_rows",
    "find_dialogues",
    "load_qa_pairs",
    "load_training_table",
    "make_splits",
    "select_config",
    "split_table",
    "with_dialogues",
]

log = logging.getLogger(__name__)

DIALOGUE_PREFIX = "dialogue:"  # source of a dialogue row in the training table: dialogue:<its source>
SOURCES = {
    "synthetic": ("synthetic",),
    "interview": ("interview",),
    "combined": ("synthetic", "interview"),
    "multiturn": ("synthetic", "interview", f"{DIALOGUE_PREFIX}synthetic", f"{DIALOGUE_PREFIX}interview"),
}
#: Data configurations that train on conversations (their dialogues must be found).
CONVERSATION_CONFIGS = ("multiturn",)
DIALOGUES_FILE = "dialogues.parquet"


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


def find_dialogues(dataset: str | Path, explicit: str | Path | None = None) -> Path:
    """The dialogues table of a multi-turn configuration: ``explicit``, else next to ``qa_pairs.parquet``.

    ``dataset`` is a dataset folder or its ``qa_pairs.parquet`` (what the pipeline hands over);
    nothing found is a :class:`DataError` that says where it looked and how to point at one.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise DataError(f"finetune.dialogues: {path} not found (the dialogues table for 'multiturn')", path=path)
        return path
    dataset = Path(dataset)
    beside = dataset.is_dir() or dataset.name == "qa_pairs.parquet"  # a dataset folder's layout
    candidate = (dataset if dataset.is_dir() else dataset.parent) / DIALOGUES_FILE
    if beside and candidate.is_file():
        return candidate
    where = f"looked for {candidate}" if beside else "looked only beside a qa_pairs.parquet or in a dataset folder"
    raise DataError(
        f"data configuration 'multiturn' needs a dialogues table: no {DIALOGUES_FILE} next to {dataset} "
        f"({where}); build the dataset with dialogues or set finetune.dialogues: PATH",
        path=dataset,
    )


def dialogue_rows(dialogues: pa.Table, *, source: str = "<dialogues>") -> pa.Table:
    """The training-table rows of the dialogues with ``split == "train"`` (benchmark ones never train).

    Same columns as ``qa_pairs`` plus ``messages``; ``input`` holds the client turns (what
    decontamination scans), ``output`` the counsellor turns, ``source`` is ``dialogue:<source>``.
    """
    train = dialogues.filter(pc.equal(dialogues.column("split"), "train"))
    if train.num_rows == 0:
        splits = sorted(set(dialogues.column("split").to_pylist()))
        raise DataError(
            f"{source}: data configuration 'multiturn' has no dialogues to train on: {dialogues.num_rows} "
            f"dialogues, none with split 'train' (splits present: {splits or 'none'})",
            path=None if source.startswith("<") else source,
        )
    cols = train.to_pydict()
    inputs, outputs = [], []
    for messages in cols["messages"]:
        inputs.append("\n\n".join(m["content"] for m in messages if m["role"] == "user"))
        outputs.append("\n\n".join(m["content"] for m in messages if m["role"] == "assistant"))
    table = {name: cols[name] for name in QA_PAIRS.columns if name in cols}
    table.update(input=inputs, output=outputs, source=[DIALOGUE_PREFIX + s for s in cols["source"]])
    schema = QA_PAIRS.schema.append(DIALOGUES.schema.field("messages").with_nullable(True))
    return pa.table({**table, "messages": cols["messages"]}, schema=schema)


def with_dialogues(pairs: pa.Table, dialogues: pa.Table, *, source: str = "<dialogues>") -> pa.Table:
    """One training table: every pair (``messages`` null) followed by the training dialogues."""
    conv = dialogue_rows(dialogues, source=source)
    pairs = pairs.select(QA_PAIRS.columns).cast(QA_PAIRS.schema)
    field = conv.schema.field("messages")
    pairs = pairs.append_column(field, pa.nulls(pairs.num_rows, field.type))
    return pa.concat_tables([pairs, conv])


def load_training_table(
    dataset: str | Path, data_configs: list[str], *, dialogues: str | Path | None = None
) -> pa.Table:
    """The pairs of ``dataset`` and, when a configuration trains on conversations, its training dialogues."""
    table = load_qa_pairs(dataset)
    if not any(c in CONVERSATION_CONFIGS for c in data_configs):
        if dialogues is not None:
            log.info("finetune.dialogues is set but no data configuration trains on conversations; not read")
        return table
    path = find_dialogues(dataset, dialogues)
    conv = read_table(path, DIALOGUES)
    table = with_dialogues(table, conv, source=str(path))
    log.info("%s: %d training dialogues (of %d) join the pairs for %s", path,
             table.num_rows - sum(1 for s in table.column("source").to_pylist() if not s.startswith(DIALOGUE_PREFIX)),
             conv.num_rows, ", ".join(c for c in data_configs if c in CONVERSATION_CONFIGS))
    return table


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
    if data_config not in CONVERSATION_CONFIGS and "messages" in out.column_names:
        out = out.drop_columns(["messages"])  # a single-turn configuration's table is a plain qa_pairs one
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
    """Encode every row for SFTTrainer (pre-tokenized ``input_ids`` + ``completion_mask``).

    A ``qa_pairs`` row is one prompt and answer; a row with ``messages`` (a training dialogue) is a
    whole conversation (:meth:`PromptFormatter.encode_conversation`). Both come out in one shape,
    so packing and labels treat a mixed set alike.
    """
    lens = {"source_max_len": source_max_len, "target_max_len": target_max_len}
    cols = table.select(["instruction", "input", "output"]).to_pydict()
    messages = table.column("messages").to_pylist() if "messages" in table.column_names else [None] * table.num_rows
    return [
        formatter.encode(i, x, o, **lens) if m is None else formatter.encode_conversation(i, m, **lens)
        for i, x, o, m in zip(cols["instruction"], cols["input"], cols["output"], messages, strict=True)
    ]
