"""Debian's headless Chromium for browser tests (Playwright drives it; no browser download).

On this closed network Chromium must not reach out by itself: without the background-networking
flags it keeps retrying Google's hosts. Screenshots go to ``runs/test-artifacts/`` (or
``$MENTALCHAT_TEST_ARTIFACTS``) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_ARGS", "artifact_dir", "chromium_path", "launch_chromium"]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> Path:
    """Debian's chromium; an error naming the install script when it is missing."""
    path = Path(shutil.which("chromium") or "/usr/bin/chromium")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: scripts/install_labelstudio.sh installs Debian's chromium")
    return path


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser from a ``sync_playwright()`` context."""
    return playwright.chromium.launch(executable_path=str(chromium_path()), headless=True, args=CHROMIUM_ARGS)


def artifact_dir() -> Path:
    root = Path(os.environ.get("MENTALCHAT_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "runs" / "test-artifacts"))
    root.mkdir(parents=True, exist_ok=True)
    return root
