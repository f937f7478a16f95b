"""On-disk response cache for API calls, safe across processes, Ray workers and NFS.

Why: judging the same answers twice (a rerun after a crash, a new statistic) must not pay twice.
One small JSON file per :func:`~mentalchat.engine.types.request_key`, in a folder sharded by the
key's first two hex digits (``cache_dir/ab/abcdef….json``). Files are written to a unique temporary
name in the same folder and renamed into place (``os.replace``), which is atomic on local disks and
NFS, so concurrent writers of the same key simply race to publish identical content and a reader
never sees half a file. Only the response is stored (text, finish reason, token counts), never
request headers or keys.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CachedResponse", "ResponseCache"]

log = logging.getLogger(__name__)

_KEY_RE = re.compile(r"^[0-9a-f]{16,128}$")
_FORMAT = 1


@dataclass(frozen=True)
class CachedResponse:
    text: str
    finish_reason: str | None
    tokens_in: int
    tokens_out: int


class ResponseCache:
    """A folder of cached responses keyed by request hash."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path_for(self, key: str) -> Path:
        if not _KEY_RE.match(key):
            raise ValueError(f"cache key must be a lowercase hex digest, got {key!r}")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedResponse | None:
        """The cached response, or None (missing, unreadable or from another format: a miss)."""
        path = self.path_for(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("text"), str):
            return None
        return CachedResponse(
            text=data["text"],
            finish_reason=data.get("finish_reason"),
            tokens_in=int(data.get("tokens_in") or 0),
            tokens_out=int(data.get("tokens_out") or 0),
        )

    def put(self, key: str, response: CachedResponse) -> None:
        """Publish atomically; a failure to write is logged, never raised (the call succeeded)."""
        path = self.path_for(key)
        payload = {
            "format": _FORMAT,
            "text": response.text,
            "finish_reason": response.finish_reason,
            "tokens_in": response.tokens_in,
            "tokens_out": response.tokens_out,
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not write cache entry %s: %s", path, exc)
        finally:
            if tmp.exists():
                tmp.unlink(missing_ok=True)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/*.json")) if self.root.is_dir() else 0

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.root)!r})"
