"""The response cache: sharded layout, atomic publication, corrupt entries, many writers."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from mentalchat.engine.cache import CachedResponse, ResponseCache
from mentalchat.engine.types import ChatRequest, SamplingConfig, request_key


def _key(prompt: str = "hi", **sampling) -> str:
    return request_key("openai", "gpt-4o", ChatRequest.from_prompt("x", prompt), SamplingConfig(**sampling))


def test_roundtrip_and_layout(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    key = _key()
    assert cache.get(key) is None
    cache.put(key, CachedResponse("answer", "stop", 12, 3))
    path = tmp_path / "c" / key[:2] / f"{key}.json"
    assert path.is_file() and cache.path_for(key) == path
    assert cache.get(key) == CachedResponse("answer", "stop", 12, 3)
    assert set(json.loads(path.read_text())) == {"format", "text", "finish_reason", "tokens_in", "tokens_out"}
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(cache) == 1


def test_keys_separate_what_changes_a_response() -> None:
    assert _key("a") != _key("b")
    assert _key(temperature=0.0) != _key(temperature=0.5)
    assert _key() == _key()
    req = ChatRequest.from_prompt("x", "hi")
    assert request_key("openai", "m", req, SamplingConfig()) != request_key("gemini", "m", req, SamplingConfig())
    schema_req = ChatRequest.from_prompt("x", "hi", json_schema={"type": "object"})
    assert request_key("openai", "m", req, SamplingConfig()) != request_key("openai", "m", schema_req, SamplingConfig())


def test_corrupt_or_foreign_entries_are_misses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = ResponseCache(tmp_path)
    key = _key()
    path = cache.path_for(key)
    path.parent.mkdir(parents=True)
    path.write_text('{"text": "half')
    assert cache.get(key) is None
    assert "unreadable cache entry" in caplog.text
    path.write_text(json.dumps({"format": 999, "text": "x"}))
    assert cache.get(key) is None
    cache.put(key, CachedResponse("fixed", "stop", 1, 1))
    assert cache.get(key).text == "fixed"


def test_rejects_non_hex_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hex digest"):
        ResponseCache(tmp_path).path_for("../../etc/passwd")


def test_unwritable_folder_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = ResponseCache(blocker)
    cache.put(_key(), CachedResponse("a", "stop", 1, 1))
    assert "could not write cache entry" in caplog.text
    assert cache.get(_key()) is None


def _writer(root: str, worker: int, keys: list[str]) -> None:
    cache = ResponseCache(root)
    for _ in range(20):
        for k in keys:
            cache.put(k, CachedResponse(f"answer for {k}", "stop", 5, 7))
            got = cache.get(k)
            assert got is not None and got.text == f"answer for {k}", (worker, k)


def test_many_processes_write_the_same_keys(tmp_path: Path) -> None:
    keys = [_key(f"p{i}") for i in range(10)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, keys)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    cache = ResponseCache(tmp_path)
    assert len(cache) == 10
    assert all(cache.get(k).text == f"answer for {k}" for k in keys)
    assert not list(tmp_path.rglob("*.tmp"))
