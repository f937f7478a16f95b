"""kill -9 in the middle of a judge job, rerun: at most the calls in flight are repeated, none is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mentalchat.core.rubric import METRICS
from mentalchat.schemas import read_table
from mentalchat.testing.fault_server import FaultServer

MAX_CONCURRENCY = 3


def _job(repo: Path, cfg: Path, qpath: Path, apath: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(repo / "jobs" / "judge.py"), "--config", str(cfg), "--questions", str(qpath),
         "--answers", str(apath), "--output", str(out), "--no-progress"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_kill_9_and_rerun_repeats_at_most_in_flight_calls(tmp_path: Path, repo_root: Path, make_inputs) -> None:
    qpath, apath = make_inputs(tmp_path / "in", n_questions=12, models=("m-a", "m-b", "m-c"))
    n_items = 36
    out = tmp_path / "out"
    with FaultServer(latency_s=0.25, fault_rates={"500": 0.1}, seed=3) as srv:
        cfg = tmp_path / "judge.yaml"
        cfg.write_text(yaml.safe_dump({
            "engines": {"j": {"backend": "openai", "model": "judge-model", "base_url": srv.openai_base_url,
                              "sampling": {"temperature": 0.0, "max_tokens": 300},
                              "http": {"max_concurrency": MAX_CONCURRENCY, "min_concurrency": MAX_CONCURRENCY,
                                       "max_retries": 8, "backoff_base_s": 0.01, "backoff_max_s": 0.05}}},
            "judge": {"judges": [{"engine": "j"}]},
        }))
        first = _job(repo_root, cfg, qpath, apath, out)
        deadline = time.monotonic() + 120
        while srv.count(status=200) < 12:
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        first.wait(30)
        assert first.returncode == -signal.SIGKILL
        while srv.in_flight:
            time.sleep(0.02)
        run1 = srv.requests
        assert not (out / "judgments.parquet").exists()  # nothing published by the killed run
        assert list((out / "_progress").glob("chunk-*.jsonl")), "finished calls were not persisted"

        second = _job(repo_root, cfg, qpath, apath, out)
        log = second.communicate(timeout=180)[0]
        assert second.returncode == 0, log
        run2 = srv.requests[len(run1):]

    # "In flight" at the kill: items asked for but not answered (a call on the wire, or waiting to
    # retry after a 500), plus answers sent in the last 0.2 s that the job may not have stored yet.
    asked_before = {r.prompt for r in run1}
    answered = {r.prompt for r in run1 if r.status == 200 and r.t_end is not None and r.t_end < t_kill - 0.2}
    in_flight = asked_before - answered
    asked_again = {r.prompt for r in run2} & asked_before
    assert asked_again <= in_flight, f"{len(asked_again - in_flight)} finished calls were repeated"
    assert len(in_flight) <= 2 * MAX_CONCURRENCY  # sanity: the job really was mid-run, not idle
    assert len(answered) >= 12 - MAX_CONCURRENCY
    # Every item ends scored (the injected 500s are retried away).
    df = read_table(out / "judgments.parquet", "judgments").to_pandas()
    assert len(df) == n_items * len(METRICS)
    assert (df.parse_status == "ok").all(), df.error.dropna().unique()
    assert "36 scored, 0 failed" in log
