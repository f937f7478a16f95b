"""The batch journal: every batch a run submitted, kept in the run's folder, so nothing is paid twice.

Why: a batch runs for minutes to hours on the provider's side, long after the process that
submitted it may have died. A driver that restarts must find its batches and collect them rather
than submit (and pay for) the same requests again. Each submission is recorded *before* the
provider is asked to create it (with a tag the provider stores as metadata or display name), and
again with the batch id once it exists, so a crash between the two is repaired by looking the tag
up at the provider (:meth:`mentalchat.engine.batch.BatchProvider.find`).

One JSON file, rewritten atomically (temporary sibling + rename) on every change; a record names
its requests by id *and* by a fingerprint of the exact payload sent, so a request that changed
since (another prompt, other sampling) is not answered by an old batch.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

from mentalchat.errors import InputError
from mentalchat.io import write_json_atomic

__all__ = ["BatchJournal", "BatchRecord"]

_VERSION = 1


@dataclasses.dataclass
class BatchRecord:
    """One submitted (or being submitted) batch."""

    tag: str  # our name for the submission, stored at the provider (metadata / display name)
    provider: str
    model: str
    endpoint: str | None
    round: int  # 1 for a first submission, 2+ for follow-ups of failed items
    ids: list[str]  # request ids in submission order (Gemini answers inlined requests in this order)
    fingerprints: list[str]  # payload hash per id
    submitted_at: float = dataclasses.field(default_factory=time.time)
    batch_id: str | None = None  # None until the provider confirmed the batch
    state: str = "submitting"  # the provider's last reported state
    status: str = "open"  # open | collected | abandoned (never created, or dropped)

    @property
    def open(self) -> bool:
        return self.status == "open"


class BatchJournal:
    """The batches of one engine in one run folder (``path=None``: kept in memory only)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._records: list[BatchRecord] = []
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._records = [BatchRecord(**rec) for rec in data.get("batches", [])]
            except (json.JSONDecodeError, TypeError) as exc:
                raise InputError(f"{self.path}: unreadable batch journal ({exc})", path=self.path) from None

    def records(self) -> list[BatchRecord]:
        with self._lock:
            return list(self._records)

    def open_records(self) -> list[BatchRecord]:
        return [r for r in self.records() if r.open]

    def add(self, record: BatchRecord) -> BatchRecord:
        with self._lock:
            self._records.append(record)
            self._save()
        return record

    def update(self, record: BatchRecord, **changes: Any) -> None:
        """Change a record's fields and persist at once."""
        with self._lock:
            for key, value in changes.items():
                setattr(record, key, value)
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        write_json_atomic(self.path, {"version": _VERSION, "batches": [dataclasses.asdict(r) for r in self._records]})
