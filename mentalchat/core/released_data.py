"""MentalChat16K-format files (``instruction``, ``input``, ``output``) → ``qa_pairs`` rows.

Why: the authors released their training data as two CSVs (``Interview_Data_6K.csv``,
``Synthetic_Data_10K.csv``), and other counselling sets come as CSV, JSONL or Parquet with the same
three columns. Both ``mentalchat import-dataset`` (which writes a dataset folder with a card) and
the fine-tuning stage (which accepts such a file as ``--dataset``) read them through
:func:`read_released`, so a file means the same rows either way.

Per row: the source (``interview`` or ``synthetic``) comes from a ``source`` column, else from the
file name (``Interview…``/``Synthetic…``), else from the caller's ``source``; the id is the content
hash of (input, output), the same hash stage 1 gives its pairs; ``page_ref`` is
``<file name>:<line>`` (the line a CSV record or JSONL object starts on; the 1-based row of a
Parquet file). Rows with an empty input or output and repeated (input, output) pairs are kept out
and returned as rejects (``missing``, ``duplicate``); wholly blank rows are only counted.

Bad input raises :class:`ReleasedDataError` naming the file and line: a missing column, a file that
is empty, binary or not UTF-8, a malformed CSV record or JSONL line, a value that is not text.
Nothing is returned for part of the input.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentalchat.core.crisis_rules import audit_pair
from mentalchat.errors import InputError, InputNotFoundError

__all__ = [
    "IMPORT_PROMPT_VERSION",
    "RELEASED_SUFFIXES",
    "ReleasedData",
    "ReleasedDataError",
    "pair_id",
    "read_released",
    "released_files",
    "source_from_name",
]

RELEASED_SUFFIXES = (".csv", ".jsonl", ".parquet")
SOURCES = ("interview", "synthetic")
IMPORT_PROMPT_VERSION = "imported"
UNKNOWN_GENERATOR = "unknown"


class ReleasedDataError(InputError):
    """A released-format file that cannot be imported; the message names the file and line."""


def pair_id(inp: str, out: str) -> str:
    """Content hash of a pair: the same (input, output) always gets the same id (stage 1 uses it too)."""
    blob = json.dumps([inp, out], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def source_from_name(name: str) -> str | None:
    """``interview`` or ``synthetic`` when the file name says exactly one of them."""
    low = name.lower()
    said = [s for s in SOURCES if s in low]
    return said[0] if len(said) == 1 else None


def released_files(path: str | Path) -> list[Path]:
    """The file itself, or a folder's CSV/JSONL/Parquet files (sorted, hidden ones skipped)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in RELEASED_SUFFIXES and not p.name.startswith((".", "_")))
        if not files:
            raise ReleasedDataError(f"{path}: folder holds no {'/'.join(RELEASED_SUFFIXES)} files", path=path)
        return files
    if not path.exists():
        raise InputNotFoundError(f"{path}: no such file or folder", path=path)
    if path.suffix.lower() not in RELEASED_SUFFIXES:
        raise ReleasedDataError(f"{path}: unsupported file type (expected {', '.join(RELEASED_SUFFIXES)})", path=path)
    return [path]


# ---------------------------------------------------------------------------------------------
# Records out of each format: (line, {lower-case column: value})
# ---------------------------------------------------------------------------------------------
def _decode(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise ReleasedDataError.at(path, None, "empty file")
    if b"\x00" in data[:65536]:
        raise ReleasedDataError.at(path, None, "binary file (NUL bytes); expected UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ReleasedDataError.at(
            path, line, f"not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None


def _header(path: Path, names: Iterable[Any]) -> list[str]:
    header = [str(n).strip().lower() for n in names]
    dup = sorted({h for h in header if header.count(h) > 1 and h})
    if dup:
        raise ReleasedDataError.at(path, 1, f"columns repeat: {dup}")
    return header


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    text = _decode(path)
    limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long answers; the default is 128 KiB per field
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = _header(path, next(reader))
        except StopIteration:
            raise ReleasedDataError.at(path, None, "empty file") from None
        except csv.Error as exc:
            raise ReleasedDataError.at(path, 1, f"malformed CSV header: {exc}") from None
        yield 0, {"__header__": header}
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ReleasedDataError.at(path, start, f"malformed CSV record: {exc}") from None
            if not row:
                continue
            if len(row) != len(header):
                raise ReleasedDataError.at(
                    path, start, f"record has {len(row)} fields, the header has {len(header)} "
                    "(an unclosed quote or a stray comma?)")
            yield start, dict(zip(header, row, strict=True))
    finally:
        csv.field_size_limit(limit)


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    text = _decode(path)
    seen_header: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReleasedDataError.at(path, n, f"invalid JSON: {exc.msg}") from None
        if not isinstance(rec, dict):
            raise ReleasedDataError.at(path, n, f"expected a JSON object, got {type(rec).__name__}")
        rec = {str(k).strip().lower(): v for k, v in rec.items()}
        seen_header |= set(rec)
        yield n, rec
    yield 0, {"__header__": sorted(seen_header)}


def _parquet_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ReleasedDataError.at(path, None, f"not a readable Parquet file: {exc}") from None
    header = _header(path, table.column_names)
    yield 0, {"__header__": header}
    for i, row in enumerate(table.to_pylist(), 1):
        yield i, {k.strip().lower(): v for k, v in row.items()}


def _records(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    suffix = path.suffix.lower()
    reader = {".csv": _csv_records, ".jsonl": _jsonl_records, ".parquet": _parquet_records}[suffix]
    header: list[str] = []
    rows = []
    for line, rec in reader(path):
        if "__header__" in rec:
            header = rec["__header__"]
        else:
            rows.append((line, rec))
    if not rows:
        raise ReleasedDataError.at(path, None, "holds no rows (a header at most)")
    return header, rows


# ---------------------------------------------------------------------------------------------
# Rows → qa_pairs rows
# ---------------------------------------------------------------------------------------------
@dataclass
class ReleasedData:
    """What :func:`read_released` made of the files: pairs, rejects and per-file counts."""

    pairs: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        """Totals over files (rows read, kept, empty, duplicate, blank), pairs by source."""
        keys = ("rows", "kept", "empty", "duplicate", "blank")
        out: dict[str, Any] = {k: sum(f[k] for f in self.files) for k in keys}
        out["by_source"] = dict(sorted(Counter(p["source"] for p in self.pairs).items()))
        out["instructions"] = len({p["instruction"] for p in self.pairs})
        return out


def _text(value: Any, path: Path, line: int, column: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ReleasedDataError.at(path, line, f"column {column!r} must be text, got {type(value).__name__}")
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _reject(source: str, filt: str, reason: str, ref: str, inp: str, out: str, topic: str | None) -> dict[str, Any]:
    rid = hashlib.sha256(json.dumps([source, filt, ref, inp, out, reason], ensure_ascii=False).encode()).hexdigest()
    return {"id": rid[:16], "source": source, "filter": filt, "reason": reason, "topic": topic, "page_ref": ref,
            "input": inp or None, "output": out or None}


def read_released(
    paths: str | Path | Iterable[str | Path],
    *,
    source: str | None = None,
    instruction: str | None = None,
) -> ReleasedData:
    """Read released-format files (or folders of them) into ``qa_pairs`` and ``rejects`` rows.

    ``source`` is used for files with neither a ``source`` column nor a telling name;
    ``instruction`` for files without an ``instruction`` column (else that column is required).
    """
    if source is not None and source not in SOURCES:
        raise ReleasedDataError(f"source {source!r}: expected one of {list(SOURCES)}")
    if isinstance(paths, str | Path):
        paths = [paths]
    files = [f for p in paths for f in released_files(p)]
    names = Counter(f.name for f in files)
    data = ReleasedData()
    seen: dict[str, str] = {}
    for path in files:
        header, rows = _records(path)
        label = path.name if names[path.name] == 1 else str(path)
        need = ["input", "output"] + ([] if instruction is not None else ["instruction"])
        missing = [c for c in need if c not in header]
        if missing:
            raise ReleasedDataError.at(
                path, 1 if path.suffix.lower() == ".csv" else None,
                f"missing column(s) {missing} (has {header}); MentalChat16K files have instruction, input, output")
        by_name = source_from_name(path.name)
        file_source = by_name or source
        stats = {"file": label, "path": str(path), "sha256": _file_sha256(path), "format": path.suffix.lower()[1:],
                 "rows": 0, "kept": 0, "empty": 0, "duplicate": 0, "blank": 0,
                 "source_from": None, "sources": Counter()}
        for line, rec in rows:
            stats["rows"] += 1
            inp = _text(rec.get("input"), path, line, "input")
            out = _text(rec.get("output"), path, line, "output")
            instr = _text(rec.get("instruction"), path, line, "instruction") if "instruction" in header else ""
            instr = instr or (instruction or "")
            topic = (_text(rec.get("topic"), path, line, "topic") or None) if "topic" in rec else None
            row_source = _text(rec.get("source"), path, line, "source").lower() if "source" in rec else ""
            if row_source and row_source not in SOURCES:
                raise ReleasedDataError.at(path, line, f"source {row_source!r}: expected one of {list(SOURCES)}")
            src = row_source or file_source
            if not any(isinstance(v, str) and v.strip() for v in rec.values()):
                stats["blank"] += 1  # a row of empty fields: nothing to reject
                continue
            if src is None:
                raise ReleasedDataError.at(
                    path, line, "cannot tell whether this row is interview or synthetic data: no 'source' "
                    "column value, and the file name says neither Interview nor Synthetic; pass --source "
                    "interview|synthetic")
            stats["source_from"] = stats["source_from"] or (
                "column" if row_source else "file name" if by_name else "option")
            stats["sources"][src] += 1
            ref = f"{label}:{line}"
            if not inp or not out:
                what = "empty input and output" if not inp and not out else "empty input" if not inp else "empty output"
                data.rejects.append(_reject(src, "missing", what, ref, inp, out, topic))
                stats["empty"] += 1
                continue
            pid = pair_id(inp, out)
            if pid in seen:
                data.rejects.append(_reject(src, "duplicate", f"same input and output as {seen[pid]}", ref, inp, out,
                                            topic))
                stats["duplicate"] += 1
                continue
            if not instr:
                raise ReleasedDataError.at(path, line, "empty instruction (give one with --instruction)")
            seen[pid] = ref
            audit = audit_pair(inp, out)
            generator = _text(rec.get("generator_model"), path, line, "generator_model") if "generator_model" in rec else ""
            data.pairs.append({
                "id": pid, "instruction": instr, "input": inp, "output": out, "source": src, "topic": topic,
                "page_ref": ref, "generator_model": generator or UNKNOWN_GENERATOR,
                "prompt_version": IMPORT_PROMPT_VERSION, "crisis_flag": audit.flagged,
                "crisis_categories": ",".join(audit.categories) or None, "crisis_escalated": audit.escalated,
            })
            stats["kept"] += 1
        stats["sources"] = dict(sorted(stats["sources"].items()))
        data.files.append(stats)
    return data
