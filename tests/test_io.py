"""Atomic publication: a failure mid-write leaves the previous output intact and no temp files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.io import atomic_dir, atomic_path, read_done_marker, write_done_marker


def test_atomic_path_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible until the block ends
    assert target.read_text() == "new"


def test_atomic_path_keeps_old_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_dir(tmp_path: Path) -> None:
    out = tmp_path / "stage"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("crash")
    assert sorted(p.name for p in out.iterdir()) == ["a"]
    with atomic_dir(out) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_done_marker(tmp_path: Path) -> None:
    assert read_done_marker(tmp_path) is None
    write_done_marker(tmp_path, stage="stats", config_hash="abc", rows=3)
    assert read_done_marker(tmp_path) == {"stage": "stats", "config_hash": "abc", "rows": 3}


def test_iter_jsonl_names_file_and_line(tmp_path: Path) -> None:
    from mentalchat.io import iter_jsonl

    class Bad(ValueError):
        pass

    good = tmp_path / "good.jsonl"
    good.write_text('{"a": 1}\n\n  \n{"a": 2}\n', encoding="utf-8")
    assert list(iter_jsonl(good)) == [(1, {"a": 1}), (4, {"a": 2})]  # blank lines skipped, numbers kept
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(Bad, match=r"broken\.jsonl:2: invalid JSON"):
        list(iter_jsonl(broken, error=Bad))
    listy = tmp_path / "list.jsonl"
    listy.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"list\.jsonl:1: expected a JSON object"):
        list(iter_jsonl(listy))
    with pytest.raises(Bad, match=r"absent\.jsonl: cannot open"):
        list(iter_jsonl(tmp_path / "absent.jsonl", error=Bad))
