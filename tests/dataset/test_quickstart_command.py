"""The README's stage-1 command on this machine: it finishes, or stops at once saying what to change.

Why: on a 2-core machine ``jobs/build_dataset.py --config configs/quickstart.yaml`` used to wait
forever (de-identification 0.5 CPU + vLLM 2 CPUs + post-processing 0.5 CPU, all at once, "pending:
2 CPU"). The job starts its own local Ray with this machine's CPUs, exactly as a user's run does;
``PYTHONPATH`` makes the subprocess import this checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "jobs/build_dataset.py", "--config", "configs/quickstart.yaml"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "OMP_NUM_THREADS")}
    env.update({"PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "TOKENIZERS_PARALLELISM": "false"})
    env.update(extra)
    return env


@pytest.mark.slow
def test_quickstart_stage1_command_finishes(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    start = time.monotonic()
    try:
        run = subprocess.run([*COMMAND, "--output", str(out)], cwd=REPO, env=_env(), capture_output=True, check=False,
                             text=True, timeout=1200)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the stage-1 quickstart command still runs after {exc.timeout:.0f} s:\n{(exc.stderr or '')[-3000:]}")
    took = time.monotonic() - start
    assert run.returncode == 0, run.stderr[-4000:]
    assert (out / "qa_pairs.parquet").is_file() and (out / "_MENTALCHAT_DONE.json").is_file()
    if (os.cpu_count() or 0) < 3:  # the quickstart's 3 CPUs at once: sized down here, said once
        assert "sized down to fit this cluster" in run.stderr
        assert "engines.smollm2-vllm.vllm.cpus_per_replica" in run.stderr
    print(f"stage 1 quickstart: {took:.0f} s on {os.cpu_count()} CPUs")


def test_quickstart_stage1_command_errors_fast_when_asked_not_to_resize(tmp_path: Path) -> None:
    """MENTALCHAT_RESOURCE_CHECK=error on a node too small: exit 2 within a minute, keys named."""
    cpus = os.cpu_count() or 2
    # make the engine's share alone bigger than this machine, so the refusal holds on any machine
    over = f"engines.smollm2-vllm.vllm.cpus_per_replica={cpus + 1}"
    start = time.monotonic()
    run = subprocess.run([*COMMAND, "--output", str(tmp_path / "ds"), over], cwd=REPO,
                         env=_env(MENTALCHAT_RESOURCE_CHECK="error"), capture_output=True, text=True, timeout=300,
                         check=False)
    took = time.monotonic() - start
    assert run.returncode == 2, run.stderr[-4000:]
    assert "error: dataset (interview path)" in run.stderr
    assert f"needs {cpus + 1} CPU on one node" in run.stderr
    assert "engines.smollm2-vllm.vllm.cpus_per_replica" in run.stderr
    assert took < 120, f"took {took:.0f} s to refuse"
    assert not (tmp_path / "ds").exists()
