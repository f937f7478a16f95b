"""Atomic file and folder publication, and line-numbered JSONL reading.

A stage never writes where the next stage reads: it writes to a hidden sibling path and renames it
into place at the end, so a crash leaves either the old complete output or none at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mentalchat.errors import InputError, MentalchatError

__all__ = [
    "check_id_text",
    "atomic_dir",
    "atomic_path",
    "build_lock",
    "cache_root",
    "iter_jsonl",
    "read_done_marker",
    "write_done_marker",
    "write_json_atomic",
]

DONE_MARKER = "_MENTALCHAT_DONE.json"


def cache_root() -> Path:
    """Where built artefacts live (converted models, derived word lists): ``$MENTALCHAT_CACHE`` or
    ``~/.cache/mentalchat``."""
    env = os.environ.get("MENTALCHAT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mentalchat"


@contextlib.contextmanager
def build_lock(target: str | Path) -> Iterator[None]:
    """Serialise builders of one cache entry across processes (Ray workers building the same thing)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(f".{target.name}.lock")
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it takes the place of ``path`` (old contents removed).

    The old folder is first renamed aside, so between the two renames a reader sees no folder
    rather than a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = _tmp_sibling(path)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str), encoding="utf-8")


def write_done_marker(folder: str | Path, *, stage: str, config_hash: str, **extra: Any) -> None:
    """Mark a stage's output folder complete for a given config hash (read by the pipeline)."""
    write_json_atomic(Path(folder) / DONE_MARKER, {"stage": stage, "config_hash": config_hash, **extra})


def read_done_marker(folder: str | Path) -> dict[str, Any] | None:
    marker = Path(folder) / DONE_MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def iter_jsonl(path: str | Path, *, error: type[Exception] = InputError) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) for each non-blank line of a JSONL file.

    A file that cannot be opened, a line that is not JSON or not a JSON object raises ``error``
    with a message naming the file and line (and, for a :class:`MentalchatError`, ``path`` and
    ``line`` attributes), so every reader reports bad input the same way.
    """
    path = Path(path)

    def fail(line: int | None, message: str) -> Exception:
        where = f"{path}:{line}" if line is not None else str(path)
        if issubclass(error, MentalchatError):
            return error(f"{where}: {message}", path=path, line=line)
        return error(f"{where}: {message}")

    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise fail(None, f"cannot open: {exc.strerror}") from None
    with fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise fail(line_no, f"invalid JSON: {exc.msg}") from None
            if not isinstance(rec, dict):
                raise fail(line_no, "expected a JSON object")
            yield line_no, rec


def check_id_text(rec: dict[str, Any], path: Path, line: int, seen: dict[str, int]) -> str:
    """Validate one ``{"id": ..., "text": ...}`` record of an audit file; returns its id as a string.

    ``seen`` maps ids to the line they were first on, so a repeated id names both lines.
    """
    if "id" not in rec or rec["id"] is None or isinstance(rec["id"], bool | dict | list):
        raise InputError.at(path, line, "missing 'id' (a string or a number)")
    if not isinstance(rec.get("text"), str):
        what = "missing 'text'" if "text" not in rec else f"'text' must be a string, got {type(rec['text']).__name__}"
        raise InputError.at(path, line, what)
    key = str(rec["id"])
    if key in seen:
        raise InputError.at(path, line, f"id {key!r} repeats line {seen[key]}")
    seen[key] = line
    return key
