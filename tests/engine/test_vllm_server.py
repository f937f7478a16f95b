"""VLLMServer: a real vLLM OpenAI-compatible server on the tiny model, spoken to over raw HTTP."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mentalchat.engine.vllm_server import VLLMServer, VLLMServerError

pytestmark = pytest.mark.slow


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def _group_alive(pgid: int) -> bool:
    out = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return any(not line.split()[1].startswith("Z") for line in out.splitlines() if line.strip())


def test_server_answers_and_stops_even_on_error(tiny_model: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    srv = VLLMServer(str(tiny_model), served_model_name="tiny", max_model_len=256, log_path=log)
    with pytest.raises(KeyError, match="leave the block"), srv:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        models = json.load(urllib.request.urlopen(f"{srv.base_url}/models", timeout=10))
        assert [m["id"] for m in models["data"]] == ["tiny"]
        body = {"model": "tiny", "max_tokens": 12, "temperature": 0,
                "messages": [{"role": "user", "content": "I feel overwhelmed at work."}]}
        with ThreadPoolExecutor(4) as pool:  # concurrent requests on the single-process engine
            answers = list(pool.map(lambda _: _post(f"{srv.base_url}/chat/completions", body), range(4)))
        for answer in answers:
            choice = answer["choices"][0]
            assert choice["finish_reason"] in ("stop", "length")
            assert 1 <= answer["usage"]["completion_tokens"] <= 12
        assert len({a["choices"][0]["message"]["content"] for a in answers}) == 1  # greedy: identical
        pgid = srv.process.pid
        raise KeyError("leave the block with an error, as a failing test would")
    assert not srv.running
    assert not _group_alive(pgid), "server processes outlived the context manager"
    assert log.stat().st_size > 0


def test_failed_start_reports_log_tail(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    missing.mkdir()  # a folder without config.json: vLLM exits at once
    srv = VLLMServer(str(missing), startup_timeout_s=120, env={"HF_HUB_OFFLINE": "1"})
    with pytest.raises(VLLMServerError) as err:
        srv.start()
    assert "exited with code" in str(err.value)
    assert str(missing) in str(err.value)  # the log tail names what vLLM could not load
    assert not srv.running
