"""``mentalchat deidentify`` / ``jobs/deidentify.py``: audit the de-identifier on your own text first.

Why: before a full build, a team wants to see what the de-identifier does to a sample of its own
transcripts, with the exact de-identifier and settings the dataset builder will use. This command
reads JSONL (``{"id": ..., "text": ...}`` per line, optionally ``"transcript"`` to group lines of
one transcript so that a name found on one line is removed from all of them) or a transcript
folder in any format the builder reads, and writes the same ids with the de-identified text and
per-type counts. The whole input is validated before anything is written, and the output appears
in one rename, so a bad line never leaves half a file behind.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentalchat.core.cli import ErrorPolicy, add_config_arguments
from mentalchat.errors import InputError, InputNotFoundError
from mentalchat.io import check_id_text

__all__ = ["AuditDoc", "DeidentifyCommand", "read_audit_input"]


@dataclass
class AuditDoc:
    """One document to de-identify: its lines (pages) share placeholders and propagation."""

    key: str
    ids: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)


def _decode_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    if not data.strip():
        raise InputError(f"{path}: empty file (expected one JSON object per line)", path=path)
    if b"\x00" in data[:8192]:
        raise InputError(f"{path}: binary file (NUL bytes); expected UTF-8 JSON lines", path=path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError.at(path, line, f"not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    return text.splitlines()


def _read_jsonl(path: Path) -> list[AuditDoc]:
    docs: dict[str, AuditDoc] = {}
    seen: dict[str, int] = {}
    for line_no, line in enumerate(_decode_lines(path), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError.at(path, line_no, f"invalid JSON: {exc.msg}") from None
        if not isinstance(rec, dict):
            raise InputError.at(path, line_no, f"expected a JSON object, got {type(rec).__name__}")
        key = check_id_text(rec, path, line_no, seen)
        group = str(rec["transcript"]) if rec.get("transcript") is not None else f"\0{key}"
        doc = docs.setdefault(group, AuditDoc(group))
        doc.ids.append(rec["id"])
        doc.texts.append(rec["text"])
        doc.extra.append({"transcript": rec["transcript"]} if rec.get("transcript") is not None else {})
    if not docs:
        raise InputError(f"{path}: no records (only blank lines)", path=path)
    return list(docs.values())


def _read_folder(folder: Path, page_words: int, max_file_bytes: int) -> list[AuditDoc]:
    from mentalchat.dataset.readers import read_transcripts

    report = read_transcripts(folder, page_words=page_words, max_file_bytes=max_file_bytes)
    for issue in report.issues:
        print(f"warning: {issue}", file=sys.stderr)
    if not report.transcripts:
        raise InputError(f"{folder}: no readable transcripts", path=folder)
    return [
        AuditDoc(
            t.transcript_id,
            ids=[f"{t.transcript_id}:{p.number}" for p in t.pages],
            texts=[p.text for p in t.pages],
            extra=[{"transcript": t.transcript_id, "page": p.number} for p in t.pages],
        )
        for t in report.transcripts
    ]


def read_audit_input(path: str | Path, *, page_words: int = 400, max_file_bytes: int = 20_000_000) -> list[AuditDoc]:
    """A JSONL file or a transcript folder as documents; any problem is an error naming file and line."""
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, page_words, max_file_bytes)
    if not path.is_file():
        raise InputNotFoundError(f"input not found: {path}", path=path)
    return _read_jsonl(path)


class DeidentifyCommand:
    name = "deidentify"
    summary = "de-identify a JSONL file or a transcript folder with the dataset builder's de-identifier"
    usage = """\
examples:
  python jobs/deidentify.py --input sample.jsonl --output sample.deid.jsonl
  python jobs/deidentify.py --input transcripts/ --output audit.jsonl --config configs/paper.yaml
  mentalchat deidentify --input sample.jsonl --output out.jsonl deid.ner=none

Input lines are {"id": ..., "text": ...}; lines with the same "transcript" are one transcript (a
name found on one line is removed from all of them, with the same placeholder). A folder is read
like the dataset builder reads --transcripts (.txt, .jsonl, .docx), one output line per page.
Without --config the builder's default settings are used; overrides are relative to the dataset
section (deid.ner=none) or the file root. The output holds the ids, the de-identified text and
the replaced spans per type; a summary by type goes to stdout."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--input", required=True, help="JSONL file ({'id', 'text'} per line) or transcript folder")
        parser.add_argument("--output", required=True, help="JSONL file to write (replaced atomically)")
        parser.add_argument("--config", help="config whose dataset.deid section to use (default: built-in settings)")
        add_config_arguments(parser, config_required=False)

    def run(self, args: argparse.Namespace, policy: ErrorPolicy) -> int:
        from mentalchat.config import apply_overrides, load_config_dict, section_config
        from mentalchat.dataset.config import DatasetConfig
        from mentalchat.dataset.deid import get_deidentifier
        from mentalchat.io import atomic_path

        doc = load_config_dict(args.config) if args.config else {"dataset": {}}
        doc = apply_overrides(doc, args.overrides, section="dataset")
        cfg = section_config(DatasetConfig, doc, "dataset", source=args.config or "<defaults>")
        docs = read_audit_input(args.input, page_words=cfg.interview.page_words,
                                max_file_bytes=cfg.interview.max_file_bytes)
        deid = get_deidentifier(cfg.deid)
        totals: Counter = Counter()
        pages = 0
        t0 = time.perf_counter()
        rows: list[dict[str, Any]] = []
        for d in docs:
            results = deid.deidentify_pages(d.texts)
            for rid, extra, res in zip(d.ids, d.extra, results, strict=True):
                rows.append({"id": rid, **extra, "text": res.text, "counts": res.counts})
                totals.update(res.counts)
            pages += len(d.texts)
        seconds = time.perf_counter() - t0
        with atomic_path(args.output) as tmp:
            with tmp.open("w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{len(rows)} records ({len(docs)} documents) de-identified in {seconds:.1f} s "
              f"({pages / seconds if seconds else 0:.1f} pages/s) -> {args.output}")
        width = max((len(k) for k in totals), default=4)
        for etype, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {etype:<{width}}  {n}")
        if not totals:
            print("  nothing replaced")
        return 0
