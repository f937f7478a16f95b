"""``--push-to-hub REPO``: a built dataset folder to the Hugging Face Hub, private, only past the leak gate.

Interview-derived text may leave the machine only when the build's leak gate scanned it and
passed (``build_stats.json`` records the scan; a failed gate publishes nothing, so a folder whose
stats lack the scan was built with the gate off). Synthetic-only and imported folders hold no
interview text and need no scan. The token comes from the environment (``HF_TOKEN``) only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from mentalchat.errors import InputError, UsageError

__all__ = ["HubApi", "LeakGateRefusal", "check_publishable", "push_to_hub"]

TOKEN_ENV = "HF_TOKEN"
#: What goes up: the tables, the card and its figures (not the done marker or work files).
UPLOAD_PATTERNS = ["*.parquet", "*.jsonl", "README.md", "figures/*.png", "build_stats.json"]


class LeakGateRefusal(UsageError):
    """The folder holds interview-derived text that no passed leak gate has scanned."""


class HubApi(Protocol):
    """The two calls of :class:`huggingface_hub.HfApi` a push makes (a test passes a recorder)."""

    def create_repo(self, repo_id: str, *, repo_type: str, private: bool, exist_ok: bool) -> Any: ...

    def upload_folder(self, *, repo_id: str, folder_path: str, repo_type: str, allow_patterns: list[str],
                      commit_message: str) -> Any: ...


def check_publishable(folder: str | Path) -> dict[str, Any]:
    """The build stats of a folder that may be published; :class:`LeakGateRefusal` otherwise."""
    folder = Path(folder)
    stats_path = folder / "build_stats.json"
    if not (folder / "qa_pairs.parquet").is_file() or not stats_path.is_file():
        raise InputError(f"{folder}: not a built dataset folder (no qa_pairs.parquet / build_stats.json)")
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    interview = (stats.get("interview") or {}).get("pages", 0)  # dialogue windows come from these pages too
    gate = stats.get("leak_gate")
    if interview and not gate:
        raise LeakGateRefusal(
            f"{folder}: holds text from {interview} interview pages but was built with the leak gate off "
            "(dataset.leak_gate.enabled=false); rebuild with the gate on before publishing"
        )
    if gate and gate.get("suspects", 0) > gate.get("max_suspects", 0):
        raise LeakGateRefusal(f"{folder}: the leak gate found {gate['suspects']} suspected leaks "
                              f"(at most {gate['max_suspects']} allowed)")
    return stats


def push_to_hub(folder: str | Path, repo: str, *, private: bool = True, api: HubApi | None = None) -> str:
    """Create ``repo`` (a dataset repo, private unless asked) and upload the folder; returns its URL."""
    check_publishable(folder)
    if api is None:
        token = os.environ.get(TOKEN_ENV)
        if not token:
            raise UsageError(f"--push-to-hub needs a Hugging Face token in ${TOKEN_ENV} (write access)")
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo, folder_path=str(folder), repo_type="dataset", allow_patterns=UPLOAD_PATTERNS,
                      commit_message="mentalchat dataset build")
    return f"https://huggingface.co/datasets/{repo}"
