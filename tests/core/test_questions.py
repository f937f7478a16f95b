"""Question loading: FastChat JSONL and Parquet, string ids, errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mentalchat.core.questions import Question, QuestionError, bundled_multiturn_questions, load_questions


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
        (['{"question_id": 1, "turns": ["a"]}', '{"question_id": 2, "turns": ["a", " "]}'],
         r"q\.jsonl:2: question 2: turn 2 of 2 is empty"),
        (['{"question_id": 1, "turns": ["a", 3]}'], r"q\.jsonl:1: turns must be a non-empty list of strings"),
        (['{"question_id": 1, "turns": ["  "]}'], r"q\.jsonl:1: question 1 is empty"),
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


def test_multi_turn_questions_mixed_with_single_turn(tmp_path: Path) -> None:
    """FastChat's two-turn lines and the dataset stage's multi-turn benchmark lines load next to single-turn ones."""
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text("\n".join([
        json.dumps({"question_id": 81, "category": "writing", "turns": ["Write a post.", "Rewrite it."],
                    "reference": ["x", "y"]}),  # MT-bench's shape (reference answers are ignored)
        json.dumps({"question_id": "s1", "turns": ["One question."]}),
        json.dumps({"question_id": "mt-0a1b2c3d4e", "category": "interview", "turns": ["t1", "t2", "t3"]}),
    ]) + "\n")
    a, b, c = load_questions(jsonl)
    assert a.turns == ("Write a post.", "Rewrite it.") and a.text == "Write a post." and a.is_multi_turn
    assert a.question_id == "81" and a.category == "writing"
    assert b.turns == ("One question.",) and not b.is_multi_turn and b == Question("s1", "One question.")
    assert c.turns == ("t1", "t2", "t3") and c.category == "interview"
    parquet = tmp_path / "q.parquet"
    pq.write_table(pa.table({"question_id": ["81", "s1"], "turns": [["Write a post.", "Rewrite it."], ["One question."]],
                             "category": ["writing", None]}), parquet)
    assert load_questions(parquet)[:2] == [Question("81", turns=a.turns, category="writing"), b]
    pq.write_table(pa.table({"question_id": ["1", "2"], "turns": [["a"], ["b", ""]]}), parquet)
    with pytest.raises(QuestionError, match=r"q\.parquet: row 1: question 2: turn 2 of 2 is empty"):
        load_questions(parquet)


def test_bundled_multiturn_questions() -> None:
    """Two turns each; the escalation item discloses risk only in turn 2 (the crisis rules agree)."""
    from mentalchat.core.crisis_rules import find_crisis

    questions = load_questions(bundled_multiturn_questions())
    assert [q.question_id for q in questions] == ["mt1", "mt2", "mt3", "mt4"]
    assert all(len(q.turns) == 2 and q.category for q in questions)
    flagged = {q.question_id: [bool(find_crisis(t)) for t in q.turns] for q in questions}
    assert flagged["mt2"] == [False, True]
    assert sum(f[0] for f in flagged.values()) == 0  # no first turn shows risk


def test_a_limit_keeps_the_first_multi_turn_questions_too(tmp_path: Path) -> None:
    """A pipeline's merged file lists the benchmark, then its multi-turn questions: a limit of 2
    keeps two of each, in file order, instead of cutting the multi-turn ones off."""
    recs = [{"question_id": f"s{i}", "turns": [f"single {i}"]} for i in range(4)]
    recs += [{"question_id": f"m{i}", "turns": [f"first {i}", f"second {i}"]} for i in range(3)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert [q.question_id for q in load_questions(path, limit=2)] == ["s0", "s1", "m0", "m1"]
    assert len(load_questions(path)) == 7
