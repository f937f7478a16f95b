"""The judge stage with ``batch: true`` engines: same rows as online, half the cost, failures retried,
and a job killed with SIGKILL mid-batch that, rerun, collects its batch instead of submitting again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mentalchat.core.rubric import METRICS
from mentalchat.engine.batch_journal import BatchJournal
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.run import run_judge
from mentalchat.schemas import read_table
from mentalchat.testing.fault_server import FaultServer
from mentalchat.testing.fault_server.batch_jobs import BatchSettings

HTTP = {"max_retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0, "max_concurrency": 4}
BATCH = {"poll_interval_s": 0.02, "max_wait_s": 60}
FAST = BatchSettings(validate_s=0.02, process_s=0.15, finalize_s=0.02)


def _engines(srv: FaultServer, batch: dict[str, Any] | None) -> dict[str, Any]:
    common = {"sampling": {"temperature": 0.0, "max_tokens": 400}, "http": HTTP,
              "price_in_per_mtok": 10.0, "price_out_per_mtok": 30.0}
    if batch is not None:
        common["batch"] = batch
    return {
        "oa": {"backend": "openai", "model": "gpt-4o", "base_url": srv.openai_base_url, **common},
        "gm": {"backend": "gemini", "model": "gemini-2.0-flash", "base_url": srv.base_url, **common},
    }


def _cfg(srv: FaultServer, batch: dict[str, Any] | None, **extra: Any) -> JudgeConfig:
    return JudgeConfig.model_validate({"judges": [{"engine": "oa"}, {"engine": "gm"}],
                                       "engines": _engines(srv, batch), **extra})


def _rows(out: Path) -> list[tuple]:
    df = read_table(out / "judgments.parquet", "judgments").to_pandas()
    cols = ["judge", "question_id", "model", "metric", "score", "overall", "parse_status", "raw_text", "tokens_in",
            "tokens_out"]
    return sorted(df[cols].itertuples(index=False, name=None), key=repr)


def test_batch_judging_gives_the_online_rows_at_half_the_cost(tmp_path: Path, inputs) -> None:
    qpath, apath = inputs
    with FaultServer(batch=FAST) as srv:
        online = run_judge(_cfg(srv, None), qpath, [apath], tmp_path / "online", progress=False)
        n_online = len(srv.requests)
        batch = run_judge(_cfg(srv, BATCH), qpath, [apath], tmp_path / "batch", progress=False)
        batch_calls = srv.requests[n_online:]
    assert online.scored == batch.scored == online.planned == 16
    assert batch.failed == 0
    assert _rows(tmp_path / "batch") == _rows(tmp_path / "online")  # same scores, texts and tokens
    assert {r.protocol for r in batch_calls} == {"openai_batch", "gemini_batch"}  # no online call
    assert srv.batches.creates == 2  # one batch per judge engine
    assert batch.spent_usd == pytest.approx(0.5 * online.spent_usd) and online.spent_usd > 0
    df = read_table(tmp_path / "batch" / "judgments.parquet", "judgments").to_pandas()
    assert df.cost_usd.sum() == pytest.approx(0.5 * read_table(
        tmp_path / "online" / "judgments.parquet", "judgments").to_pandas().cost_usd.sum())
    for name in ("oa", "gm"):
        recs = BatchJournal(tmp_path / "batch" / "_batches" / f"{name}.json").records()
        assert [r.status for r in recs] == ["collected"]


def test_batch_dry_run_estimates_at_batch_prices(tmp_path: Path, inputs) -> None:
    qpath, apath = inputs
    with FaultServer(batch=FAST) as srv:
        online = run_judge(_cfg(srv, None), qpath, [apath], tmp_path / "o", dry_run=True, echo=lambda s: None)
        batch = run_judge(_cfg(srv, BATCH), qpath, [apath], tmp_path / "b", dry_run=True, echo=lambda s: None)
        assert srv.count() == 0
    assert batch.estimated_cost_usd == pytest.approx(0.5 * online.estimated_cost_usd) and online.estimated_cost_usd > 0


def test_partial_batch_failures_are_retried_until_every_item_is_scored(tmp_path: Path, make_inputs) -> None:
    qpath, apath = make_inputs(tmp_path / "in", n_questions=10, models=("m-a", "m-b"))
    with FaultServer(batch=BatchSettings(validate_s=0.02, process_s=0.1, finalize_s=0.02,
                                         item_fault_rates={"500": 0.25, "429": 0.1}, seed=5)) as srv:
        summary = run_judge(_cfg(srv, {**BATCH, "max_rounds": 6}), qpath, [apath], tmp_path / "out", progress=False)
        creates = srv.batches.creates
        failed_lines = sum(1 for job in srv.batches.jobs.values() for it in job.items if it.status != 200)
    assert failed_lines > 0 and creates > 2  # follow-up batches happened
    assert summary.scored == summary.planned == 40 and summary.failed == 0
    df = read_table(tmp_path / "out" / "judgments.parquet", "judgments").to_pandas()
    assert (df.parse_status == "ok").all() and df.attempts.max() >= 2


def test_max_wait_fails_the_run_naming_the_batch_and_a_rerun_collects_it(tmp_path: Path, inputs) -> None:
    from mentalchat.engine.batch import BatchWaitError

    qpath, apath = inputs
    out = tmp_path / "out"
    cfg_doc = {"judges": [{"engine": "oa"}]}
    with FaultServer(batch=BatchSettings(validate_s=0.02, process_s=2.0, finalize_s=0.02)) as srv:
        short = JudgeConfig.model_validate({**cfg_doc, "engines": {"oa": _engines(srv, {**BATCH, "max_wait_s": 0.3})["oa"]}})
        with pytest.raises(BatchWaitError, match=r"batch_\w+ \(in_progress"):
            run_judge(short, qpath, [apath], out, progress=False)
        assert not (out / "judgments.parquet").exists()
        patient = JudgeConfig.model_validate({**cfg_doc, "engines": {"oa": _engines(srv, BATCH)["oa"]}})
        summary = run_judge(patient, qpath, [apath], out, progress=False)
        assert srv.batches.creates == 1
    assert summary.scored == 8


def _job(repo: Path, cfg: Path, qpath: Path, apath: Path, out: Path) -> subprocess.Popen:
    # this checkout's package, whichever one the environment has installed
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen(
        [sys.executable, str(repo / "jobs" / "judge.py"), "--config", str(cfg), "--questions", str(qpath),
         "--answers", str(apath), "--output", str(out), "--no-progress"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_a_job_killed_mid_batch_collects_its_batches_on_rerun_without_submitting_again(
    tmp_path: Path, repo_root: Path, make_inputs
) -> None:
    qpath, apath = make_inputs(tmp_path / "in", n_questions=6, models=("m-a", "m-b"))
    out = tmp_path / "out"
    with FaultServer(batch=BatchSettings(validate_s=0.05, process_s=4.0, finalize_s=0.05)) as srv:
        srv.script(["500"], match="answer to q2 by m-a")  # one failed line: a follow-up batch after the rerun
        cfg = tmp_path / "judge.yaml"
        engines = _engines(srv, {"poll_interval_s": 0.05, "max_wait_s": 120})
        cfg.write_text(yaml.safe_dump({"engines": engines, "judge": {"judges": [{"engine": "oa"}, {"engine": "gm"}]}}))
        first = _job(repo_root, cfg, qpath, apath, out)
        deadline = time.monotonic() + 120
        while srv.batches.creates < 2 or srv.count(protocol="openai_batch") + srv.count(protocol="gemini_batch") < 6:
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the job submitted nothing"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)  # the batches are in progress (4 s) and polled
        first.wait(30)
        assert first.returncode == -signal.SIGKILL
        jobs_before = dict(srv.batches.jobs)
        assert all(not j.terminal(time.monotonic()) for j in jobs_before.values())
        for name in ("oa", "gm"):
            (rec,) = BatchJournal(out / "_batches" / f"{name}.json").open_records()
            assert rec.batch_id in jobs_before  # the id reached the journal before the kill

        second = _job(repo_root, cfg, qpath, apath, out)
        log = second.communicate(timeout=180)[0]
        assert second.returncode == 0, log
        new_jobs = [j for jid, j in srv.batches.jobs.items() if jid not in jobs_before]
    # the two original batches were collected, not submitted again; only the failed line went again
    assert srv.batches.creates == 3, log
    assert [len(j.items) for j in new_jobs] == [1]
    df = read_table(out / "judgments.parquet", "judgments").to_pandas()
    assert len(df) == 24 * len(METRICS) and (df.parse_status == "ok").all()
    assert "24 scored, 0 failed" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored"] == 24
