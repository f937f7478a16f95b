"""Tensor-parallel vLLM replicas inside Ray Data: one STRICT_PACK placement group per replica.

Run in a child process on a Ray cluster that declares four (fake) GPUs: each replica's ranks must
land in its own group, on distinct GPUs, and the groups must be given back when the stage is done.
The engine is a probe (no vLLM): it starts one-GPU child tasks the way vLLM's Ray executor starts
its ranks, and reports where they ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mentalchat.engine.config import EngineConfig, VLLMOptions
from mentalchat.engine.runner import tensor_parallel_bundles
from mentalchat.engine.vllm_backend import vllm_engine_kwargs

pytestmark = pytest.mark.slow

SCRIPT = r'''
import json, os, sys
import ray
from mentalchat.engine import runner
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatRequest, ChatResult

class Probe(runner.EngineActor):
    def __init__(self, cfg_json, request_column="request", result_column="result"):
        self.cfg = EngineConfig.model_validate_json(cfg_json)
        self.request_column, self.result_column = request_column, result_column
        pg = ray.util.get_current_placement_group()

        @ray.remote(num_gpus=1, num_cpus=0)
        def rank():
            here = ray.util.get_current_placement_group()
            return (here.id.hex() if here else None), [str(g) for g in ray.get_gpu_ids()]

        ranks = ray.get([rank.remote() for _ in range(self.cfg.vllm.tensor_parallel_size)])
        info = {"pg": pg.id.hex() if pg else None, "own_gpus": json.dumps(ray.get_gpu_ids()),
                "ranks": json.dumps(ranks)}
        # Every replica records itself at start: Ray Data may hand all rows to the replica that
        # was ready first, so the rows alone need not show both.
        with open(os.path.join(PROBE_DIR, f"replica-{os.getpid()}.json"), "w") as f:
            json.dump(info, f)

        class Fake:
            def chat_batch(self, reqs):
                return [ChatResult(id=r.id, text="ok", provider="vllm", model="probe", metadata=info) for r in reqs]
            def close(self):
                pass
        self.engine = Fake()

runner.EngineActor = Probe
ray.init(address="local", num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False)
cfg = EngineConfig.model_validate({"backend": "vllm", "model": "probe",
                                   "vllm": {"tensor_parallel_size": 2, "replicas": 2, "batch_size": 1}})
reqs = [ChatRequest(id=str(i), messages=[{"role": "user", "content": "hi"}]) for i in range(8)]
results = runner.run_requests(reqs, cfg, use_ray=True)
from ray.util.placement_group import placement_group_table
table = {k: {"state": v["state"], "strategy": v["strategy"], "bundles": list(v["bundles"].values())}
         for k, v in placement_group_table().items()}
replicas = [json.load(open(os.path.join(PROBE_DIR, n))) for n in sorted(os.listdir(PROBE_DIR))]
print("RESULT " + json.dumps({"meta": [r.metadata for r in results], "ok": [r.ok for r in results],
                              "replicas": replicas, "groups": table}))
'''


def test_each_tensor_parallel_replica_gets_its_own_group(tmp_path: Path, repo_root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(repo_root), "RAY_AUTH_MODE": "disabled"}
    probe_dir = tmp_path / "replicas"
    probe_dir.mkdir()
    script = f"PROBE_DIR = {str(probe_dir)!r}\n" + SCRIPT
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env,
                          cwd=tmp_path)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(line[len("RESULT "):])
    assert all(got["ok"]) and len(got["meta"]) == 8
    assert len(got["replicas"]) == 2  # two replicas started
    assert all(meta in got["replicas"] for meta in got["meta"])  # every row came from one of them
    by_group: dict[str, set[str]] = {}
    for meta in got["replicas"]:
        assert meta["pg"], "the replica did not run in a placement group"
        assert json.loads(meta["own_gpus"]) == []  # the replica itself holds no GPU
        ranks = json.loads(meta["ranks"])
        assert [pg for pg, _ in ranks] == [meta["pg"]] * 2  # both ranks in the replica's own group
        gpus = [g for _, ids in ranks for g in ids]
        assert len(gpus) == 2 and len(set(gpus)) == 2  # one distinct GPU per rank
        by_group.setdefault(meta["pg"], set()).update(gpus)
    assert len(by_group) == 2  # two replicas, two groups
    assert not set.intersection(*by_group.values())  # that share no GPU
    for pg in by_group:
        info = got["groups"][pg]
        assert info["strategy"] == "STRICT_PACK"
        assert [b.get("GPU") for b in info["bundles"]] == [1.0, 1.0]
        assert info["state"] == "REMOVED"  # given back once the stage is done


def test_tensor_parallel_settings() -> None:
    cfg = EngineConfig.model_validate({"backend": "vllm", "model": "m",
                                       "vllm": {"tensor_parallel_size": 4, "accelerator_type": "H100"}})
    assert cfg.vllm.gpus_per_replica == 4  # implied by the tensor-parallel size
    bundles = tensor_parallel_bundles(cfg)
    assert len(bundles) == 4 and all(b["GPU"] == 1 and b["accelerator_type:H100"] > 0 for b in bundles)
    assert bundles[0]["CPU"] == cfg.vllm.cpus_per_replica and "CPU" not in bundles[1]
    assert vllm_engine_kwargs(cfg, "m", on_cpu=False)["distributed_executor_backend"] == "ray"
    with pytest.raises(ValueError, match="must equal vllm.tensor_parallel_size"):
        VLLMOptions(tensor_parallel_size=2, gpus_per_replica=1)


def test_gpu_defaults_only_on_gpu() -> None:
    """CUDA graphs and a KV cache from the memory share on GPU; eager and a fixed cache on CPU."""
    cfg = EngineConfig(backend="vllm", model="m")
    gpu = vllm_engine_kwargs(cfg, "m", on_cpu=False)
    assert gpu["enforce_eager"] is False and gpu["gpu_memory_utilization"] == 0.9
    assert "kv_cache_memory_bytes" not in gpu
    cpu = vllm_engine_kwargs(cfg, "m", on_cpu=True)
    assert cpu["enforce_eager"] is True and "gpu_memory_utilization" not in cpu
    eager = EngineConfig.model_validate({"backend": "vllm", "model": "m", "vllm": {"enforce_eager": True}})
    assert vllm_engine_kwargs(eager, "m", on_cpu=False)["enforce_eager"] is True  # an explicit setting wins
