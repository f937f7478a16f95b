"""What ``--dataset`` accepts (dataset folders, released-format files) and decontamination before splitting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.config import load_stage_config
from mentalchat.core.decontamination import DecontaminationConfig
from mentalchat.core.questions import bundled_questions, load_questions
from mentalchat.errors import InputError
from mentalchat.finetune.config import FinetuneConfig
from mentalchat.finetune.data import decontaminate, load_qa_pairs
from mentalchat.finetune.tune import plan_experiment
from mentalchat.schemas import get_table, write_table
from mentalchat.testing.finetune_data import qa_rows, write_qa_pairs, write_released_csv

SAMPLE = load_questions(bundled_questions())[1]  # a bundled benchmark question, planted below


def _stage1_folder(folder: Path) -> Path:
    """The layout stage 1 publishes: qa_pairs beside pages and rejects (other tables), card, marker."""
    write_qa_pairs(folder / "qa_pairs.parquet", n_synthetic=12, n_interview=8)
    write_table(get_table("pages").from_rows([{"transcript_id": "t001", "page": 1, "n_words": 50,
                                               "deid_counts": "{}", "status": "qa"}]), folder / "pages.parquet", "pages")
    write_table(get_table("rejects").empty(), folder / "rejects.parquet", "rejects")
    (folder / "README.md").write_text("# Dataset card\n", encoding="utf-8")
    (folder / "_MENTALCHAT_DONE.json").write_text(json.dumps({"stage": "dataset", "config_hash": "x"}))
    return folder


def test_a_dataset_folder_gives_its_qa_pairs_table(tmp_path: Path) -> None:
    folder = _stage1_folder(tmp_path / "dataset")
    table = load_qa_pairs(folder)
    assert table.num_rows == 20 and set(table.column("source").to_pylist()) == {"synthetic", "interview"}
    parts = tmp_path / "parts"  # a folder of qa_pairs part files still reads as one table
    write_qa_pairs(parts / "part-0.parquet", n_synthetic=4, n_interview=0)
    write_qa_pairs(parts / "part-1.parquet", n_synthetic=0, n_interview=3)
    assert load_qa_pairs(parts).num_rows == 7


def test_a_released_csv_is_read_directly(tmp_path: Path) -> None:
    csv_file = write_released_csv(tmp_path / "Synthetic_Data_10K.csv", n=10)
    table = load_qa_pairs(csv_file)
    assert table.num_rows == 10 and set(table.column("source").to_pylist()) == {"synthetic"}
    assert table.column("page_ref")[0].as_py() == "Synthetic_Data_10K.csv:2"
    assert "\n" in table.column("output")[0].as_py()  # the quoted multi-line answer survived
    assert load_qa_pairs(tmp_path).num_rows == 10  # a folder of released files


def test_decontamination_drops_benchmark_copies_before_splitting(tmp_path: Path) -> None:
    rows = qa_rows(n_synthetic=10, n_interview=6)
    rows[3]["input"] = SAMPLE.text  # exact copy
    rows[12]["input"] = "Hello. " + SAMPLE.text.replace("two months", "eight weeks")  # edited, interview
    table = get_table("qa_pairs").from_rows(rows)
    kept, report = decontaminate(table, DecontaminationConfig(), source="ds")
    assert kept.num_rows == 14 and SAMPLE.text not in kept.column("input").to_pylist()
    assert report["removed"] == 2 and report["flagged_by_source"] == {"interview": 1, "synthetic": 1}
    assert {p["question_id"] for p in report["pairs"]} == {SAMPLE.question_id}
    assert report["reference"] == str(bundled_questions())
    same, flagged_only = decontaminate(table, DecontaminationConfig(remove=False))
    assert same.num_rows == 16 and flagged_only["flagged"] == 2 and flagged_only["removed"] == 0
    assert decontaminate(table, DecontaminationConfig(enabled=False)) == (table, None)
    pool = tmp_path / "pool.csv"  # another reference: a CSV pool without that question
    pool.write_text("Question_ID,Questions\n1,How do I stop worrying about my exams?\n", encoding="utf-8")
    assert decontaminate(table, DecontaminationConfig(against="pool", pool=str(pool)))[0].num_rows == 16


def test_plan_reads_the_stage1_folder_and_leaves_contaminated_pairs_out(repo_root: Path, tiny_model: Path,
                                                                       tmp_path: Path) -> None:
    folder = _stage1_folder(tmp_path / "dataset")
    rows = qa_rows(n_synthetic=12, n_interview=8)
    rows[0]["input"] = SAMPLE.text
    write_table(get_table("qa_pairs").from_rows(rows), folder / "qa_pairs.parquet", "qa_pairs")
    cfg = load_stage_config(FinetuneConfig, repo_root / "configs/smoke.yaml",
                            [f"models=[{{path: '{tiny_model}', name: tiny}}]"], section="finetune")
    plan = plan_experiment(cfg, folder, tmp_path / "out")
    assert plan.decontamination["removed"] == 1
    ids = {i for s in plan.splits.values() for part in (s.train, s.eval) for i in part.column("id").to_pylist()}
    assert rows[0]["id"] not in ids and rows[1]["id"] in ids
    assert sum(s.train.num_rows + s.eval.num_rows for n, s in plan.splits.items() if n != "combined") == 19
    off = cfg.model_copy(update={"decontamination": DecontaminationConfig(enabled=False)})
    assert plan_experiment(off, folder, tmp_path / "out").decontamination is None
    with pytest.raises(InputError, match="reference not found"):
        plan_experiment(cfg, folder, tmp_path / "out", benchmark=tmp_path / "missing.jsonl")
