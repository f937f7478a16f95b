"""Question loading: FastChat JSONL and Parquet, string ids, errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mentalchat.core.questions import QuestionError, load_questions


def test_fastchat_jsonl_and_parquet_agree(tmp_path: Path) -> None:
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text("\n".join(json.dumps({"question_id": i, "category": "generic", "turns": [f"text {i}"]})
                               for i in (3, 1, 2)) + "\n\n")
    parquet = tmp_path / "q.parquet"
    pq.write_table(pa.table({"question_id": ["3", "1", "2"], "question": ["text 3", "text 1", "text 2"]}), parquet)
    a, b = load_questions(jsonl), load_questions(parquet)
    assert [q.question_id for q in a] == ["3", "1", "2"] == [q.question_id for q in b]
    assert [q.text for q in a] == [q.text for q in b]
    assert a[0].category == "generic" and b[0].category is None
    assert [q.question_id for q in load_questions(jsonl, limit=2)] == ["3", "1"]


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (['{"question_id": 1, "turns": ["a"]}', "{not json"], r"q\.jsonl:2: invalid JSON"),
        (['{"question_id": 1, "turns": ["a"]}', '{"question_id": 1, "turns": ["b"]}'], r"q\.jsonl:2: .*repeats"),
        (['{"question_id": 1, "turns": ["a", "b"]}'], r"2 turns; only single-turn"),
        (['{"question_id": 1, "turns": ["  "]}'], r"question 1 is empty"),
        (['{"turns": ["a"]}'], r"q\.jsonl:1: missing field"),
    ],
)
def test_bad_question_files_name_file_and_line(tmp_path: Path, lines: list[str], match: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(QuestionError, match=match):
        load_questions(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(QuestionError, match="not found"):
        load_questions(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(QuestionError, match="no questions"):
        load_questions(tmp_path / "empty.jsonl")
    pq.write_table(pa.table({"id": ["1"]}), tmp_path / "bad.parquet")
    with pytest.raises(QuestionError, match="bad.parquet: needs a question_id column"):
        load_questions(tmp_path / "bad.parquet")


def test_the_benchmark_questions(shared_data: Path) -> None:
    questions = load_questions(shared_data / "eval" / "question.jsonl")
    assert len(questions) == 200 and questions[0].question_id == "1"
    assert all(q.text.strip() for q in questions)
