"""Base-model paths: check them before any worker starts, fetch ``s3://`` folders on a worker.

A model spec is a hub id (``mistralai/Mistral-7B-v0.1``), a local folder, an ``s3://`` (or other
pyarrow URI) folder, or ``local:<kit model>`` (:func:`mentalchat.models.kit.resolve_model`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from mentalchat.errors import MentalchatError
from mentalchat.models.kit import cache_root, resolve_model

__all__ = ["ModelPathError", "check_model", "materialize_model"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://")


class ModelPathError(MentalchatError, ValueError):
    """A base model that cannot be found; the message names the spec."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def check_model(spec: str) -> str:
    """Resolve ``spec`` and check that it exists; return what workers should load.

    Local folders must hold ``config.json``; ``s3://`` folders are listed; hub ids are looked up
    in the local Hugging Face cache when ``HF_HUB_OFFLINE=1`` (else left to the worker).
    """
    resolved = resolve_model(spec)
    if _URI.match(resolved):
        import pyarrow.fs as pafs

        try:
            fs, path = pafs.FileSystem.from_uri(resolved)
            info = fs.get_file_info(path.rstrip("/") + "/config.json")
        except Exception as exc:  # credentials, unknown scheme, network
            raise ModelPathError(f"model {spec!r}: cannot read {resolved}: {exc}") from exc
        if info.type != pafs.FileType.File:
            raise ModelPathError(f"model {spec!r}: no config.json under {resolved}")
        return resolved
    path = Path(resolved).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelPathError(f"model {spec!r}: folder {path} has no config.json")
        return str(path.resolve())
    if _HUB_ID.match(resolved) and not resolved.startswith((".", "~")):
        if _offline():
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(resolved, "config.json")
            if not isinstance(found, str):
                raise ModelPathError(
                    f"model {spec!r}: not a local folder and not in the Hugging Face cache "
                    "(HF_HUB_OFFLINE=1, so it cannot be downloaded)"
                )
        return resolved
    raise ModelPathError(f"model {spec!r}: no such folder ({path})")


@contextlib.contextmanager
def _file_lock(target: Path) -> Iterator[None]:
    """One downloader per folder across the processes of a node."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def materialize_model(resolved: str) -> str:
    """On a worker: a local folder for ``resolved`` (``s3://`` folders are copied once to a cache)."""
    resolved = resolve_model(resolved)
    if not _URI.match(resolved):
        return resolved
    import pyarrow.fs as pafs

    target = cache_root() / "remote-models" / hashlib.sha256(resolved.encode()).hexdigest()[:16]
    done = target / ".complete"
    if done.is_file():
        return str(target)
    with _file_lock(target):
        if not done.is_file():
            fs, path = pafs.FileSystem.from_uri(resolved)
            target.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(path, str(target), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
            done.write_text(resolved, encoding="utf-8")
    return str(target)
