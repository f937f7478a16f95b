"""``ray job submit --working-dir .`` of jobs/finetune.py against a ``ray start --head`` on 127.0.0.1.

The head node (``mentalchat.testing.ray_head``) gets its own temp dir and ports and runs in its own
process group, which is stopped at the end (``ray stop`` would also stop other users' Ray processes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.schemas import read_table
from mentalchat.testing.finetune_data import write_qa_pairs
from mentalchat.testing.ray_head import ray_head, submit_job

pytestmark = pytest.mark.slow


def test_job_submit_runs_the_finetune_job(repo_root: Path, tiny_model: Path, tmp_path: Path) -> None:
    dataset = write_qa_pairs(tmp_path / "qa.parquet", n_synthetic=16, n_interview=0)
    out = tmp_path / "out"
    entry = ["python", "jobs/finetune.py", "--config", "configs/smoke.yaml", "--dataset", str(dataset),
             "--output", str(out), f"models=[{{path: '{tiny_model}', name: tiny}}]", "data_configs=[synthetic]"]
    with ray_head(num_cpus=4) as head:
        job = submit_job(head, entry, working_dir=repo_root, timeout_s=480)
    assert job.succeeded, f"job {job.submission_id} ended {job.status} after {job.seconds:.0f} s:\n{job.logs[-5000:]}"
    assert "1 adapters ->" in job.logs
    rows = read_table(out / "manifest.parquet", "manifest").to_pylist()
    assert [(r["base_model"], r["data_config"], r["steps"]) for r in rows] == [("tiny", "synthetic", 4)]
    assert (Path(rows[0]["adapter_path"]) / "adapter_config.json").is_file()
