"""``ray job submit --working-dir .`` of jobs/pipeline.py against a private ``ray start --head`` on 127.0.0.1.

The same path as a cluster run: the job server unpacks the working dir, the driver joins the
cluster through RAY_ADDRESS, the stages run their Ray executors (Ray Data actors, Tune/Train).
Only this test's head node is stopped at the end (its process group), never other Ray clusters.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.testing.ray_head import ray_head, submit_job

pytestmark = pytest.mark.slow


def test_pipeline_job_succeeds_with_every_output(repo_root: Path, tmp_path: Path, smoke_overrides: list[str],
                                                 pipeline_outputs) -> None:
    out = tmp_path / "run"
    entry = ["python", "jobs/pipeline.py", "--config", "configs/smoke.yaml", "--output", str(out), "--no-progress",
             *smoke_overrides, "generate.max_questions=2"]
    with ray_head(num_cpus=4) as head:
        job = submit_job(head, entry, working_dir=repo_root, timeout_s=720)
    assert job.succeeded, f"job {job.submission_id} ended {job.status} after {job.seconds:.0f} s:\n{job.logs[-6000:]}"
    assert "ray: joined" in job.logs and "ray: joined a local cluster" not in job.logs  # the head, not a new one
    assert "mentalchat pipeline: 5 stages (5 ran, 0 skipped)" in job.logs
    pipeline_outputs(out)
