"""A private ``ray start --head`` on 127.0.0.1 for job-submission tests, and a ``ray job submit`` helper.

The head gets free ports, its own short ``--temp-dir`` and its own process group, which
:func:`ray_head` stops on exit: ``ray stop`` would also stop other users' Ray clusters on a shared
machine. Used by tests that submit ``jobs/*.py`` with ``--working-dir .`` as on a real cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mentalchat.errors import MentalchatError

__all__ = ["JobOutcome", "RayHead", "RayHeadError", "free_ports", "ray_head", "submit_job"]

BIN = Path(sys.executable).parent


class RayHeadError(MentalchatError, RuntimeError):
    """``ray start --head`` failed; the message carries its output."""


@dataclass(frozen=True)
class RayHead:
    address: str  # the dashboard (job server): http://127.0.0.1:<port>
    gcs_address: str
    temp_dir: str
    env: dict[str, str]
    pgid: int


@dataclass(frozen=True)
class JobOutcome:
    submission_id: str
    status: str  # a ray.job_submission.JobStatus value, or "TIMEOUT"
    logs: str
    seconds: float

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports nothing listens on right now (all bound at once, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(int(s.getsockname()[1]))
    finally:
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


def _stop_group(pgid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the head's process group, SIGKILL what is left after ``grace_s``."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while _group_pids(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _group_pids(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


@contextlib.contextmanager
def ray_head(
    *, num_cpus: int = 4, env: Mapping[str, str] | None = None, start_timeout_s: float = 180.0
) -> Iterator[RayHead]:
    """Start a head node (dashboard + job server) on 127.0.0.1; stop exactly its processes on exit."""
    gcs, dashboard, client, agent, metrics = free_ports(5)
    temp_dir = tempfile.mkdtemp(prefix="mcray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    run_env = dict(os.environ)
    run_env.update({"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "disabled",
                    "RAY_USAGE_STATS_ENABLED": "0"})
    run_env.update(env or {})
    cmd = [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true",
           "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
           "--metrics-export-port", str(metrics), "--num-cpus", str(num_cpus), "--temp-dir", temp_dir,
           "--disable-usage-stats"]
    proc = subprocess.Popen(cmd, env=run_env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    pgid = proc.pid
    try:
        try:
            out, _ = proc.communicate(timeout=start_timeout_s)
        except subprocess.TimeoutExpired:
            raise RayHeadError(f"ray start --head did not finish in {start_timeout_s:.0f} s") from None
        if proc.returncode != 0:
            raise RayHeadError(f"ray start --head failed ({proc.returncode}):\n{out[-3000:]}")
        yield RayHead(address=f"http://127.0.0.1:{dashboard}", gcs_address=f"127.0.0.1:{gcs}",
                      temp_dir=temp_dir, env=run_env, pgid=pgid)
    finally:
        _stop_group(pgid)
        shutil.rmtree(temp_dir, ignore_errors=True)


def submit_job(
    head: RayHead,
    entrypoint: Sequence[str],
    *,
    working_dir: str | Path,
    timeout_s: float = 600.0,
    submission_id: str | None = None,
    runtime_env_json: str | None = None,
) -> JobOutcome:
    """``ray job submit --working-dir DIR --no-wait -- ENTRYPOINT``, then wait for a terminal status.

    A job still running at ``timeout_s`` is stopped and reported as ``TIMEOUT`` with its logs.
    """
    from ray.job_submission import JobSubmissionClient

    sid = submission_id or f"mentalchat-{uuid.uuid4().hex[:8]}"
    cmd = [str(BIN / "ray"), "job", "submit", "--address", head.address, "--working-dir", str(working_dir),
           "--submission-id", sid, "--no-wait"]
    if runtime_env_json:
        cmd += ["--runtime-env-json", runtime_env_json]
    cmd += ["--", *entrypoint]
    t0 = time.monotonic()
    sub = subprocess.run(cmd, cwd=str(working_dir), env=head.env, capture_output=True, text=True, timeout=300)
    if sub.returncode != 0:
        return JobOutcome(sid, "SUBMIT_FAILED", sub.stdout + sub.stderr, time.monotonic() - t0)
    client = JobSubmissionClient(head.address)
    deadline = t0 + timeout_s
    status = client.get_job_status(sid)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(2)
        status = client.get_job_status(sid)
    name = str(status.value if hasattr(status, "value") else status)
    if not status.is_terminal():
        client.stop_job(sid)
        name = "TIMEOUT"
    return JobOutcome(sid, name, client.get_job_logs(sid), time.monotonic() - t0)
