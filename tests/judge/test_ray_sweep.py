"""A judge sweep over a Ray Dataset: calls spread over worker actors under one cluster-wide limiter."""

from __future__ import annotations

from pathlib import Path

from mentalchat.core.rubric import METRICS
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.run import run_judge
from mentalchat.schemas import read_table
from mentalchat.testing.fault_server import FaultServer

MAX_CONCURRENCY = 3


def test_ray_sweep_shares_one_limiter_across_workers(tmp_path: Path, ray_cluster, make_inputs, judge_responder) -> None:
    qpath, apath = make_inputs(tmp_path / "in", n_questions=8, models=("m-a", "m-b", "m-c"))
    http = {"max_concurrency": MAX_CONCURRENCY, "max_retries": 6, "backoff_base_s": 0.01, "backoff_max_s": 0.1}
    with FaultServer(latency_s=0.05, responder=judge_responder, fault_rates={"429": 0.05}, seed=1) as srv:
        cfg = JudgeConfig.model_validate({
            "executor": "ray", "ray_replicas": 2, "ray_batch_size": 6,
            "judges": [{"engine": "oa"}, {"engine": "gm"}],
            "prompts": ["mentalchat-v1"],
            "engines": {
                "oa": {"backend": "openai", "model": "judge-a", "base_url": srv.openai_base_url, "http": http},
                "gm": {"backend": "gemini", "model": "judge-g", "base_url": srv.base_url, "http": http},
            },
        })
        summary = run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False)
        by_model: dict[str, int] = {}
        peak: dict[str, int] = {}
        events = []
        for r in srv.requests:
            events += [(r.t_start, 1, r.model), (r.t_end or r.t_start, -1, r.model)]
        for _, step, model in sorted(events, key=lambda e: (e[0], e[1])):
            by_model[model] = by_model.get(model, 0) + step
            peak[model] = max(peak.get(model, 0), by_model[model])
        assert srv.count(status=429) > 0
    # Two actors per judge, yet never more calls at once than one limiter allows (429s retried away).
    assert peak["judge-a"] <= MAX_CONCURRENCY and peak["judge-g"] <= MAX_CONCURRENCY, peak
    assert summary.scored == summary.planned == 2 * 24
    df = read_table(tmp_path / "out" / "judgments.parquet", "judgments").to_pandas()
    assert len(df) == 48 * len(METRICS) and (df.parse_status == "ok").all()
