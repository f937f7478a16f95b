"""FastChat two-turn question and answer files (MT-bench's shape) <-> our questions and answers table.

The lines below are shaped as FastChat's llm_judge writes them (checked against lm-sys/FastChat,
``fastchat/llm_judge/gen_model_answer.py`` and ``data/mt_bench/question.jsonl``): a question line has
an integer ``question_id``, ``category``, ``turns`` (two client turns) and, for some categories, a
``reference`` list; an answer line is ``json.dumps`` of ``question_id``, ``answer_id`` (a 22-character
shortuuid), ``model_id``, ``choices: [{"index": 0, "turns": [a1, a2]}]`` and a float ``tstamp``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from mentalchat.core.fastchat import (
    FastChatFormatError,
    read_fastchat_dir,
    read_model_answers,
    read_questions,
    write_model_answers,
    write_questions,
)
from mentalchat.core.questions import bundled_multiturn_questions, load_questions
from mentalchat.schemas import ANSWERS

# MT-bench question 101 (reasoning: it carries reference answers), as FastChat ships it.
MT_BENCH_LINE = (
    '{"question_id": 101, "category": "reasoning", "turns": ["Imagine you are participating in a race with a '
    "group of people. If you have just overtaken the second person, what's your current position? Where is the "
    'person you just overtook?", "If the \\"second person\\" is changed to \\"last person\\" in the above question, '
    'what would the answer be?"], "reference": ["You are in second place.", "Uncertain."]}'
)


def _fastchat_answer_line(qid: int, turns: list[str]) -> str:
    """An answer line as gen_model_answer.py dumps it (json.dumps defaults: ASCII escapes, ", " separators)."""
    return json.dumps({"question_id": qid, "answer_id": "Z3ktzTXvWc8bUdhPyNBLxp", "model_id": "vicuna-7b-v1.5",
                       "choices": [{"index": 0, "turns": turns}], "tstamp": 1717000000.123456})


def test_mt_bench_question_and_answer_lines(tmp_path: Path) -> None:
    root = tmp_path / "fc"
    (root / "model_answer").mkdir(parents=True)
    (root / "question.jsonl").write_text(MT_BENCH_LINE + "\n")
    answers = ["You are in second place \u2014 the person you overtook is third.", "Then you would be last?"]
    (root / "model_answer" / "vicuna-7b-v1.5.jsonl").write_text(_fastchat_answer_line(101, answers) + "\n")

    (q,) = load_questions(root / "question.jsonl")
    assert q.question_id == "101" and q.is_multi_turn and q.category == "reasoning"
    assert q.turns[1].startswith('If the "second person"')
    data = read_fastchat_dir(root)
    assert data.questions is not None and data.questions[0]["reference"] == ["You are in second place.", "Uncertain."]
    assert data.answers is not None
    rows = data.answers.to_pylist()
    assert [(r["question_id"], r["model_id"], r["turn"], r["answer"]) for r in rows] == [
        ("101", "vicuna-7b-v1.5", 1, answers[0]), ("101", "vicuna-7b-v1.5", 2, answers[1])]

    # and back: FastChat's layout, one record holding both turns; the reference answers survive
    write_questions(data.questions, tmp_path / "out" / "question.jsonl")
    (out,) = write_model_answers(data.answers, tmp_path / "out" / "model_answer")
    qline = json.loads((tmp_path / "out" / "question.jsonl").read_text())
    assert qline == json.loads(MT_BENCH_LINE)
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["question_id"] == 101 and rec["model_id"] == "vicuna-7b-v1.5"
    assert rec["choices"] == [{"index": 0, "turns": answers}]
    assert len(rec["answer_id"]) == 22 and isinstance(rec["tstamp"], float)
    assert sorted(rec) == ["answer_id", "choices", "model_id", "question_id", "tstamp"]  # FastChat's keys
    again = read_model_answers(out, questions=data.questions)
    cols = ["question_id", "model_id", "answer", "turn"]
    assert again.select(cols).equals(data.answers.select(cols))


def _table(rows: list[dict]) -> pa.Table:
    base = {"base_model": "b", "data_config": "base"}
    return ANSWERS.from_rows([{**base, **r} for r in rows])


def test_mixed_answers_export_and_a_conversation_cut_short(tmp_path: Path) -> None:
    """Single-turn records stay as they were; a failed turn 2 exports turn 1 alone, read back as turn 1
    when the questions are known (else it would read as a single-turn answer)."""
    table = _table([
        {"question_id": "s1", "model_id": "m", "answer": "single"},
        {"question_id": "mt1", "model_id": "m", "answer": "one", "turn": 1},
        {"question_id": "mt1", "model_id": "m", "answer": "two", "turn": 2},
        {"question_id": "mt2", "model_id": "m", "answer": "only turn 1", "turn": 1},
    ])
    (path,) = write_model_answers(table, tmp_path / "model_answer")
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["question_id"], r["choices"][0]["turns"]) for r in recs] == [
        ("s1", ["single"]), ("mt1", ["one", "two"]), ("mt2", ["only turn 1"])]
    assert len({r["answer_id"] for r in recs}) == 3
    questions = [{"question_id": "s1", "turns": ["q"]}, {"question_id": "mt1", "turns": ["a", "b"]},
                 {"question_id": "mt2", "turns": ["a", "b"]}]
    back = read_model_answers(path, questions=questions).to_pylist()
    assert [(r["question_id"], r["turn"]) for r in back] == [("s1", None), ("mt1", 1), ("mt1", 2), ("mt2", 1)]
    blind = read_model_answers(path).to_pylist()
    assert [(r["question_id"], r["turn"]) for r in blind][-1] == ("mt2", None)

    gap = _table([{"question_id": "mt1", "model_id": "m", "answer": "one", "turn": 1},
                  {"question_id": "mt1", "model_id": "m", "answer": "three", "turn": 3}])
    with pytest.raises(FastChatFormatError, match=r"question mt1: turns \[1, 3\]; FastChat needs turns 1..n"):
        write_model_answers(gap, tmp_path / "gap")
    twice = _table([{"question_id": "mt1", "model_id": "m", "answer": "one", "turn": 1}] * 2)
    with pytest.raises(FastChatFormatError, match="turn 1 appears twice"):
        write_model_answers(twice, tmp_path / "twice")


def test_single_turn_export_is_unchanged(tmp_path: Path) -> None:
    """Without turns the records are what they were before multi-turn answers (tstamp aside)."""
    table = _table([{"question_id": "1", "model_id": "m", "answer": "a"},
                    {"question_id": "2", "model_id": "m", "answer": "b"}])
    (path,) = write_model_answers(table, tmp_path)
    import hashlib

    for line, (qid, ans) in zip(path.read_text().splitlines(), [("1", "a"), ("2", "b")], strict=True):
        rec = json.loads(line)
        rec.pop("tstamp")
        assert rec == {"question_id": int(qid), "model_id": "m", "choices": [{"index": 0, "turns": [ans]}],
                       "answer_id": hashlib.sha256(f"m\0{qid}\0{ans}".encode()).hexdigest()[:22]}


def test_bundled_two_turn_questions_round_trip(tmp_path: Path) -> None:
    qs = read_questions(bundled_multiturn_questions())
    assert all(len(q["turns"]) == 2 for q in qs)
    out = write_questions(qs, tmp_path / "q.jsonl")
    assert out.read_text() == bundled_multiturn_questions().read_text()
