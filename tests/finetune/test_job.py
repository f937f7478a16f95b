"""``ray job submit --working-dir .`` of jobs/finetune.py against a ``ray start --head`` on 127.0.0.1.

The head node gets its own temp dir and ports and runs in its own process group, which the test
stops at the end (``ray stop`` would also stop other users' Ray processes on this machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mentalchat.schemas import read_table
from mentalchat.testing.finetune_data import write_qa_pairs

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _group_pids(pgid: int) -> list[int]:
    import psutil

    out = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def _stop_group(pgid: int, grace_s: float = 5.0) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while _group_pids(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _group_pids(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def head_node() -> Iterator[dict]:
    gcs, dashboard, client, agent = _free_ports(4)
    temp_dir = tempfile.mkdtemp(prefix="mcft-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0")
    cmd = [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true",
           "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
           "--num-cpus", "4", "--temp-dir", temp_dir, "--disable-usage-stats"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    pgid = proc.pid
    try:
        log, _ = proc.communicate(timeout=180)
        if proc.returncode != 0:
            pytest.fail(f"ray start failed:\n{log[-3000:]}")
        yield {"address": f"http://127.0.0.1:{dashboard}", "env": env}
    finally:
        _stop_group(pgid)
        subprocess.run(["rm", "-rf", temp_dir], check=False)


def test_job_submit_runs_the_finetune_job(head_node: dict, repo_root: Path, tiny_model: Path,
                                          tmp_path: Path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    dataset = write_qa_pairs(tmp_path / "qa.parquet", n_synthetic=16, n_interview=0)
    out = tmp_path / "out"
    sid = f"mentalchat-ft-{uuid.uuid4().hex[:8]}"
    submit = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", head_node["address"], "--working-dir", ".",
         "--submission-id", sid, "--no-wait", "--",
         "python", "jobs/finetune.py", "--config", "configs/smoke.yaml", "--dataset", str(dataset),
         "--output", str(out), f"models=[{{path: '{tiny_model}', name: tiny}}]", "data_configs=[synthetic]"],
        cwd=repo_root, env=head_node["env"], capture_output=True, text=True, timeout=180,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    client = JobSubmissionClient(head_node["address"])
    deadline = time.monotonic() + 480
    status = client.get_job_status(sid)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(2)
        status = client.get_job_status(sid)
    if status != JobStatus.SUCCEEDED:
        if not status.is_terminal():
            client.stop_job(sid)
        pytest.fail(f"job {sid} ended {status}:\n{client.get_job_logs(sid)[-5000:]}")
    logs = client.get_job_logs(sid)
    assert "1 adapters ->" in logs
    rows = read_table(out / "manifest.parquet", "manifest").to_pylist()
    assert [(r["base_model"], r["data_config"], r["steps"]) for r in rows] == [("tiny", "synthetic", 4)]
    assert (Path(rows[0]["adapter_path"]) / "adapter_config.json").is_file()
