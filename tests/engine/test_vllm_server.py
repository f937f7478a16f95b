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


def test_command_uses_gpu_defaults_only_on_gpu() -> None:
    """CUDA graphs and a KV cache sized by memory share on GPU; eager and a fixed cache on CPU."""
    cpu = VLLMServer("m", port=1, kv_cache_memory_bytes=2**29, gpu_memory_utilization=0.8).command("m", on_cpu=True)
    assert "--enforce-eager" in cpu and "--gpu-memory-utilization" not in cpu
    assert cpu[cpu.index("--kv-cache-memory-bytes") + 1] == str(2**29)
    gpu = VLLMServer("m", port=1, gpu_memory_utilization=0.8).command("m", on_cpu=False)
    assert "--enforce-eager" not in gpu and "--kv-cache-memory-bytes" not in gpu
    assert gpu[gpu.index("--gpu-memory-utilization") + 1] == "0.8"
    forced = VLLMServer("m", port=1, enforce_eager=True).command("m", on_cpu=False)
    assert "--enforce-eager" in forced  # an explicit setting wins


def test_ray_served_model_runs_in_an_actor_and_dies_with_it(ray_cluster, tiny_model: Path) -> None:
    """The server lives in a Ray actor on a cluster node; killing the actor hard takes the server along."""
    import os
    import time

    from mentalchat.engine.vllm_server import RayServedModel

    srv = RayServedModel(str(tiny_model), num_cpus=1, served_model_name="tiny", max_model_len=256,
                         kv_cache_memory_bytes=32 * 2**20).start()
    try:
        assert srv.node_id in {n["NodeID"] for n in ray_cluster.nodes() if n["Alive"]}
        models = json.load(urllib.request.urlopen(f"{srv.base_url}/models", timeout=10))
        assert [m["id"] for m in models["data"]] == ["tiny"]
        pid = ray_cluster.get(srv.actor.server_pid.remote())
        assert pid and os.path.exists(f"/proc/{pid}")
        ray_cluster.kill(srv.actor)  # no graceful stop: the actor's process is killed
        srv.actor = None
        deadline = time.monotonic() + 60
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _group_alive(pid), "the vLLM server outlived its Ray actor"
    finally:
        srv.stop()
