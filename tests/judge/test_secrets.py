"""A planted API key must not appear in any output, log line or error of the judge job."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from mentalchat.schemas import read_table
from mentalchat.testing.fault_server import FaultServer


def test_planted_keys_never_leave_the_process(tmp_path: Path, repo_root: Path, make_inputs) -> None:
    # Shapes no generic key pattern knows, so only real redaction of the values can hide them.
    openai_key = f"plantedOA{uuid.uuid4().hex}"
    gemini_key = f"plantedGM{uuid.uuid4().hex}"
    qpath, apath = make_inputs(tmp_path / "in", n_questions=2)
    out = tmp_path / "out"
    fast = {"max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.02}
    # `rejecting` wants other keys and, like some providers, echoes the key it got in its 401.
    with FaultServer(api_key="the-right-key") as rejecting, FaultServer(api_key=openai_key) as accepting:
        cfg = tmp_path / "judge.yaml"
        cfg.write_text(yaml.safe_dump({
            "engines": {
                "oa-good": {"backend": "openai", "model": "gpt-4o-mini", "base_url": accepting.openai_base_url, "http": fast},
                "oa-bad": {"backend": "openai", "model": "gpt-4o-mini", "base_url": rejecting.openai_base_url, "http": fast},
                "gm-bad": {"backend": "gemini", "model": "gemini-2.0-flash", "base_url": rejecting.base_url, "http": fast},
            },
            "judge": {"judges": [{"engine": "oa-good", "name": "good"}, {"engine": "oa-bad", "name": "bad"},
                                 {"engine": "gm-bad", "name": "gbad"}],
                      "reliability": {"enabled": True, "empty_answer_questions": 1, "length_bias_samples": 1,
                                      "consistency_samples": 1}},
        }))
        env = {**os.environ, "OPENAI_API_KEY": openai_key, "GEMINI_API_KEY": gemini_key}
        logs = []
        for extra in (["--dry-run"], ["--verbose"], ["--verbose", "retry_failed=true"]):
            proc = subprocess.run(
                [sys.executable, str(repo_root / "jobs" / "judge.py"), "--config", str(cfg), "--questions", str(qpath),
                 "--answers", str(apath), "--output", str(out), *extra],
                cwd=repo_root, env=env, capture_output=True, text=True, timeout=180,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            logs.append(proc.stdout + proc.stderr)
        assert rejecting.count(status=401) > 0  # the key really was sent and echoed back
        assert any(openai_key in (r.body if isinstance(r.body, str) else "") for r in rejecting.requests) is False

    df = read_table(out / "judgments.parquet", "judgments").to_pandas()
    bad = df[df.judge.isin(["bad", "gbad"])]
    assert (bad.parse_status == "failed").all() and bad.error.str.contains("401").all()
    assert (df[df.judge == "good"].parse_status == "ok").all()

    leaks = []
    for text, where in [(log, f"log {i}") for i, log in enumerate(logs)]:
        if openai_key in text or gemini_key in text or openai_key[:14] in text:
            leaks.append(where)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any("_cache" in p.parts for p in files)
    for path in files:
        blob = path.read_bytes()
        for key in (openai_key, gemini_key):
            if key.encode() in blob or key[:14].encode() in blob:
                leaks.append(str(path))
    assert not leaks, f"key found in {leaks}"
