"""The pipeline merges multi-turn question files with the benchmark into one file both stages read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.config import ConfigError
from mentalchat.core.questions import QuestionError, load_questions
from mentalchat.pipeline.run import _Driver, load_pipeline


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _driver(repo_root: Path, out: Path, overrides: list[str]) -> _Driver:
    plan = load_pipeline(repo_root / "configs" / "smoke.yaml",
                         ["pipeline.stages=[generate,judge,stats]", *overrides])
    return _Driver(plan, out, echo=lambda _: None, progress=False)


def test_without_multi_turn_files_the_benchmark_file_is_used_as_is(repo_root: Path, tmp_path: Path) -> None:
    d = _driver(repo_root, tmp_path / "run", ["pipeline.multi_turn_questions=[]"])
    assert d.questions_path() == d.p.questions_path()
    assert not (tmp_path / "run" / "questions.jsonl").exists()


def test_multi_turn_files_are_merged_after_the_benchmark(repo_root: Path, tmp_path: Path) -> None:
    mt = _write(tmp_path / "mt.jsonl", [
        {"question_id": "mt-a", "category": "grief", "turns": ["My dog died.", "Do you remember what I said?"]},
        {"question_id": "mt-b", "turns": ["I can't sleep.", "It is worse now.", "Thanks."]},
    ])
    d = _driver(repo_root, tmp_path / "run", [f"pipeline.multi_turn_questions=[{mt}]"])
    merged = d.questions_path()
    assert merged == tmp_path / "run" / "questions.jsonl"
    qs = load_questions(merged)
    main = load_questions(d.p.questions_path())
    assert [q.question_id for q in qs] == [q.question_id for q in main] + ["mt-a", "mt-b"]
    assert qs[-2].turns == ("My dog died.", "Do you remember what I said?") and qs[-2].category == "grief"
    assert qs[-1].is_multi_turn and len(qs[-1].turns) == 3
    assert [q.text for q in qs[: len(main)]] == [q.text for q in main]
    # unchanged content: not rewritten, so the stages' keys stay the same
    before = merged.stat().st_mtime_ns
    assert d.questions_path() == merged and merged.stat().st_mtime_ns == before


def test_dataset_entry_uses_the_held_out_file_once_the_dataset_stage_wrote_it(repo_root: Path, tmp_path: Path) -> None:
    plan = load_pipeline(repo_root / "configs" / "smoke.yaml", ["pipeline.multi_turn_questions=[dataset]"])
    d = _Driver(plan, tmp_path / "run", echo=lambda _: None, progress=False)
    assert d.questions_path() == d.p.questions_path()  # nothing written yet: the benchmark alone
    (tmp_path / "run" / "dataset").mkdir(parents=True)
    (tmp_path / "run" / "dataset" / "multiturn_benchmark.jsonl").write_text("")  # no dialogue held out
    assert d.questions_path() == d.p.questions_path()
    _write(tmp_path / "run" / "dataset" / "multiturn_benchmark.jsonl",
           [{"question_id": "mt-0123456789", "category": "interview", "turns": ["one", "two"]}])
    ids = [q.question_id for q in load_questions(d.questions_path())]
    assert ids[-1] == "mt-0123456789"


def test_bad_multi_turn_entries_are_errors_that_name_them(repo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="multi_turn_questions: file not found"):
        _driver(repo_root, tmp_path / "run", [f"pipeline.multi_turn_questions=[{tmp_path / 'nope.jsonl'}]"])
    with pytest.raises(ConfigError, match="'dataset' needs the dataset stage"):
        _driver(repo_root, tmp_path / "run", ["pipeline.multi_turn_questions=[dataset]"])
    main_id = load_questions(load_pipeline(repo_root / "configs" / "smoke.yaml").pipeline.questions_path())[0].question_id
    clash = _write(tmp_path / "clash.jsonl", [{"question_id": main_id, "turns": ["a", "b"]}])
    d = _driver(repo_root, tmp_path / "run", [f"pipeline.multi_turn_questions=[{clash}]"])
    with pytest.raises(QuestionError, match=f"question_id '{main_id}' is also in"):
        d.questions_path()


def test_bundled_entry_adds_the_two_turn_samples(repo_root: Path, tmp_path: Path) -> None:
    from mentalchat.core.questions import bundled_multiturn_questions

    d = _driver(repo_root, tmp_path / "run", ["pipeline.multi_turn_questions=[bundled]"])
    merged = load_questions(d.questions_path())
    samples = load_questions(bundled_multiturn_questions())
    assert [q for q in merged if q.is_multi_turn] == samples and all(len(q.turns) >= 2 for q in samples)
