"""Label Studio JSON exports back into judgments: unblinding, flags, and the errors that name the task."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pytest

from mentalchat.core.rubric import METRICS
from mentalchat.human_study import StudyImportError, export_study, read_export, read_key
from mentalchat.human_study.study import KEY_FILE

from .conftest import ls_result


def _exported(tmp_path: Path, study_inputs, raters=("r1", "r2"), per_rater=4, overlap=0.5):
    answers, questions = study_inputs
    out = tmp_path / "study"
    design = export_study(answers, questions, out, raters=list(raters), per_rater=per_rater, overlap=overlap)
    return out, design, read_key(out / KEY_FILE)


def _annotate(out: Path, rater: str, score_of, *, user: int = 1) -> Path:
    """Rate every task of ``rater`` as Label Studio's JSON export would hold it."""
    tasks = json.loads((out / "tasks" / f"{rater}.json").read_text())
    for n, task in enumerate(tasks, start=1):
        task["id"] = n
        s = score_of(task["data"]["item"])
        task["annotations"] = [{"id": 100 + n, "completed_by": user, "was_cancelled": False, "lead_time": 12.5,
                                "result": ls_result([s] * 7, s, crisis=s <= 2, comment=f"note {n}")}]
    path = out / f"{rater}-export.json"
    path.write_text(json.dumps(tasks))
    return path


def test_ratings_are_unblinded_to_the_right_answer(tmp_path: Path, study_inputs) -> None:
    out, design, key = _exported(tmp_path, study_inputs)
    # A score that encodes the (question, model) an item stands for: any mix-up in unblinding shows.
    code = {i: (int(it.question_id) % 9) + 1 for i, it in design.items.items()}
    got = read_export([_annotate(out, "r1", code.get), _annotate(out, "r2", code.get, user=2)], key)
    rows = got.judgments.to_pylist()
    assert len(rows) == 2 * 4 * 7 and got.annotated == {"r1": 4, "r2": 4}
    for row in rows:
        assert row["score"] == (int(row["question_id"]) % 9) + 1
        assert row["overall"] == row["score"] and row["parse_status"] == "human"
        assert row["judge"] in ("human:r1", "human:r2")
        it = next(it for it in design.items.values() if (it.question_id, it.model) == (row["question_id"], row["model"]))
        assert (row["base_model"], row["data_config"]) == (it.base_model, it.data_config)
    assert set(pc.unique(got.judgments["metric"]).to_pylist()) == set(METRICS)
    flags = got.flags.to_pylist()
    assert len(flags) == 8 and all(f["lead_time_s"] == 12.5 for f in flags)
    assert [f["crisis_concern"] for f in flags] == [code[f["item"]] <= 2 for f in flags]
    assert all(f["comment"].startswith("note ") for f in flags)


def test_unrated_and_skipped_tasks_are_counted_not_imported(tmp_path: Path, study_inputs) -> None:
    out, _, key = _exported(tmp_path, study_inputs)
    path = _annotate(out, "r1", lambda i: 5)
    tasks = json.loads(path.read_text())
    tasks[0]["annotations"] = []
    tasks[1]["annotations"][0]["was_cancelled"] = True
    path.write_text(json.dumps(tasks))
    got = read_export([path], key)
    assert got.annotated == {"r1": 2} and got.unannotated == 2 and got.cancelled == 1


def test_a_missing_rating_is_kept_as_not_rated(tmp_path: Path, study_inputs) -> None:
    out, _, key = _exported(tmp_path, study_inputs)
    path = _annotate(out, "r1", lambda i: 5)
    tasks = json.loads(path.read_text())
    tasks[0]["annotations"][0]["result"] = tasks[0]["annotations"][0]["result"][1:]
    path.write_text(json.dumps(tasks))
    rows = [r for r in read_export([path], key).judgments.to_pylist() if r["score"] is None]
    assert len(rows) == 1 and rows[0]["error"] == "not rated" and rows[0]["metric"] == "Active Listening"


@pytest.mark.parametrize(("edit", "match"), [
    (lambda t: t[1]["annotations"][0]["result"][0]["value"].update(rating=11), r"task 2 .*rating 11 is outside"),
    (lambda t: t[2]["data"].update(item="i0000000000"), r"task 3: item 'i0000000000' is not in the unblinding key"),
    (lambda t: t[0]["data"].pop("item"), r"task 1: no data.item"),
    (lambda t: t[0]["annotations"][0]["result"].append(
        {"from_name": "sentiment", "value": {"choices": ["x"]}}), r"task 1 .*control 'sentiment'"),
    (lambda t: t[0]["annotations"].append(dict(t[0]["annotations"][0], id=9)), r"task 1 .*2 annotations"),
])
def test_bad_exports_name_file_and_task(tmp_path: Path, study_inputs, edit, match) -> None:
    out, _, key = _exported(tmp_path, study_inputs)
    path = _annotate(out, "r1", lambda i: 5)
    tasks = json.loads(path.read_text())
    edit(tasks)
    path.write_text(json.dumps(tasks))
    with pytest.raises(StudyImportError, match=match) as info:
        read_export([path], key)
    assert str(path) in str(info.value)


def test_rater_from_annotator_splits_a_shared_project(tmp_path: Path, study_inputs) -> None:
    out, _, key = _exported(tmp_path, study_inputs)
    path = _annotate(out, "r1", lambda i: 4)
    tasks = json.loads(path.read_text())
    for t in tasks:
        second = dict(t["annotations"][0], id=t["annotations"][0]["id"] + 50,
                      completed_by={"id": 2, "email": "b@clinic.example"})
        t["annotations"].append(second)
    path.write_text(json.dumps(tasks))
    got = read_export([path], key, rater_from="annotator")
    assert got.annotated == {"1": 4, "b@clinic.example": 4}


def test_bad_files(tmp_path: Path, study_inputs) -> None:
    _, _, key = _exported(tmp_path, study_inputs)
    (tmp_path / "obj.json").write_text('{"a": 1}')
    with pytest.raises(StudyImportError, match="list of tasks"):
        read_export([tmp_path / "obj.json"], key)
    (tmp_path / "broken.json").write_text('[\n{"a": ')
    with pytest.raises(StudyImportError, match=r"broken.json:2: not JSON"):
        read_export([tmp_path / "broken.json"], key)
    with pytest.raises(StudyImportError, match="not an unblinding key"):
        read_key(tmp_path / "obj.json")
