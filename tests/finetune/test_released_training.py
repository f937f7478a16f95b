"""A released-format CSV, given straight to the finetune job, trains a few steps on the tiny model,
after decontamination has dropped the row that copies a benchmark question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.cli import job_main
from mentalchat.core.questions import bundled_questions, load_questions
from mentalchat.io import read_done_marker
from mentalchat.schemas import read_table
from mentalchat.testing.finetune_data import write_released_csv

pytestmark = pytest.mark.slow


def test_a_released_csv_trains_through_the_finetune_job(ray_cluster, repo_root: Path, tiny_model: Path,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = load_questions(bundled_questions())[0]
    copied = (sample.text, "It sounds as if saying yes has become a habit that costs you your evenings.")
    csv_file = write_released_csv(tmp_path / "Synthetic_Data_10K.csv", n=16, extra=[copied])
    out = tmp_path / "out"
    argv = ["--config", str(repo_root / "configs/smoke.yaml"), "--dataset", str(csv_file), "--output", str(out),
            f"models=[{{path: '{tiny_model}', name: tiny}}]", "data_configs=[synthetic]", "train.max_steps=2"]
    assert job_main("finetune", argv, prog="jobs/finetune.py") == 0  # what jobs/finetune.py runs
    printed = capsys.readouterr().out
    assert "1 adapters ->" in printed and "; 1 training pairs near benchmark questions removed" in printed
    rows = read_table(out / "manifest.parquet", "manifest").to_pylist()
    assert [(r["base_model"], r["data_config"], r["steps"]) for r in rows] == [("tiny", "synthetic", 2)]
    assert rows[0]["n_train"] + rows[0]["n_eval"] == 16  # 17 rows read, the copy removed
    assert (Path(rows[0]["adapter_path"]) / "adapter_config.json").is_file()
    report = json.loads((out / "decontamination.json").read_text(encoding="utf-8"))
    assert report["removed"] == 1 and report["pairs"][0]["question_id"] == sample.question_id
    assert read_done_marker(out)["decontamination"]["removed"] == 1
