"""The answer stage's journal: answers appended as they arrive, so a crashed job resumes.

Why: answering 200 questions with a dozen models takes hours on a cluster, and a lost node or a
pre-empted job should not cost the answers already made. Each engine group (base model and
prompt format) appends its finished rows to its own JSONL file in the stage's work folder; the
file name carries a fingerprint of everything that shapes an answer (engine settings, sampling,
instruction, prompt format), so a changed config starts that group afresh instead of mixing
answers. A row is reused only for the same question text; failed requests are never journaled,
so they are asked again. A half-written last line (the crash) is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["AnswerJournal", "question_digest"]

log = logging.getLogger(__name__)


def question_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class AnswerJournal:
    """One group's append-only answer log: ``done()`` what an earlier run left, ``append()`` new rows."""

    def __init__(self, folder: str | Path, group: str, fingerprint: dict[str, Any]) -> None:
        digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in group)[-60:]
        self.path = Path(folder) / f"{safe}-{digest}.jsonl"
        self._lock = threading.Lock()
        self._checked_end = False

    def done(self) -> dict[str, dict[str, Any]]:
        """Rows journaled by an earlier run, by request id (the last one wins)."""
        rows: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return rows
        with self.path.open("rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    rec = json.loads(raw)
                    rows[str(rec["rid"])] = rec
                except (ValueError, KeyError, TypeError):
                    log.warning("%s: line %d unreadable (a crash mid-write?); that answer is asked again", self.path, n)
        return rows

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append and flush to disk, so what is journaled survives the process being killed."""
        if not records:
            return
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as f:
                if not self._checked_end:  # a crash may have left a partial last line: start a new one
                    self._checked_end = True
                    if f.tell() > 0:
                        with self.path.open("rb") as r:
                            r.seek(-1, os.SEEK_END)
                            if r.read(1) != b"\n":
                                data = b"\n" + data
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
