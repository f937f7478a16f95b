"""The progress store: whole chunks only, later records win, spend adds up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.engine.types import ChatResult
from mentalchat.judge.store import ProgressStore


def _res(i: str, **kw) -> ChatResult:
    return ChatResult(id=i, provider="openai", model="m", **kw)


def test_append_reload_and_override(tmp_path: Path) -> None:
    store = ProgressStore(tmp_path / "p")
    assert store.append([]) == 0 and not list((tmp_path / "p").iterdir())
    store.append([_res("a", text="x", cost_usd=0.5), _res("b", error="HTTP 500", cost_usd=0.0)])
    store.append([_res("b", text="y", cost_usd=0.25)])
    again = ProgressStore(tmp_path / "p")
    assert len(again) == 2 and "a" in again and again.get("b")["text"] == "y" and again.get("b")["error"] is None
    assert again.spent_usd() == pytest.approx(0.75)
    assert all(not p.name.startswith(".") for p in (tmp_path / "p").iterdir())  # no temp files left
    (tmp_path / "p" / ".chunk-half.jsonl.tmp-1234").write_text('{"item_id": "zz"')  # a write killed midway
    assert len(ProgressStore(tmp_path / "p")) == 2


def test_corrupt_chunk_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "chunk-1.jsonl").write_text(json.dumps({"item_id": "a"}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"chunk-1.jsonl:2"):
        ProgressStore(folder)
