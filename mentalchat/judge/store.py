"""Resumable progress for the judge stage: finished calls appended in small atomic chunk files.

Each chunk is written to a temporary name and renamed, so a ``kill -9`` leaves whole chunks only;
the calls lost are those still in flight plus any finished since the last chunk, and the engine's
on-disk response cache answers the latter again for free. Later records for an item override
earlier ones (a retried failure).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mentalchat.engine.types import ChatResult
from mentalchat.errors import InputError
from mentalchat.io import atomic_path

__all__ = ["ProgressStore"]

_PREFIX = "chunk-"


class ProgressStore:
    """Finished judge calls of one output folder, keyed by work-item id."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        for path in sorted(self.folder.glob(f"{_PREFIX}*.jsonl")):
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError.at(path, lineno, f"corrupt progress record: {exc.msg}") from None
                self._records[rec["item_id"]] = rec

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, item_id: str) -> dict[str, Any] | None:
        return self._records.get(item_id)

    def records(self) -> dict[str, dict[str, Any]]:
        return dict(self._records)

    def spent_usd(self) -> float:
        return float(sum(r.get("cost_usd") or 0.0 for r in self._records.values()))

    def append(self, results: Iterable[ChatResult]) -> int:
        """Persist finished results as one chunk file; returns how many were written."""
        rows = []
        for res in results:
            rec = res.model_dump(mode="json", exclude={"metadata", "id"})
            rec["item_id"] = res.id
            rec["recorded_at"] = time.time()
            rows.append(rec)
        if not rows:
            return 0
        name = f"{_PREFIX}{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:6]}.jsonl"
        with atomic_path(self.folder / name) as tmp:
            with tmp.open("w", encoding="utf-8") as fh:
                for rec in rows:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        for rec in rows:
            self._records[rec["item_id"]] = rec
        return len(rows)
