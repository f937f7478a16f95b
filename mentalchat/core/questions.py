"""Benchmark questions from a FastChat ``question.jsonl`` or a Parquet file.

Both the answer and the judge stages read questions through :func:`load_questions`, so a question id
means the same thing in every table (ids are strings: FastChat's integer ids become ``"1"``).

A question has one or more client turns (FastChat's ``turns: [t1, t2, ...]``, or a Parquet list
column ``turns``); one file may mix single- and multi-turn questions. A multi-turn question is
answered turn by turn with the model's own earlier answers in context (see ``generate/run.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mentalchat.errors import MentalchatError

__all__ = ["Question", "QuestionError", "bundled_multiturn_questions", "bundled_questions", "first_questions", "load_questions"]


def bundled_questions() -> Path:
    """Ten counselling questions written for the project (FastChat format): the default benchmark of a
    pipeline run, of the quickstart and smoke configs, and of training-data decontamination."""
    return Path(str(resources.files("mentalchat") / "data" / "samples" / "questions.jsonl"))


def bundled_multiturn_questions() -> Path:
    """Four two-turn counselling questions written for the project (FastChat format, ids ``mt1``..``mt4``):
    turn 2 tests memory of a turn-1 detail, or brings in risk that turn 1 did not show (escalation)."""
    return Path(str(resources.files("mentalchat") / "data" / "samples" / "questions_multiturn.jsonl"))


class QuestionError(MentalchatError, ValueError):
    """A question file that cannot be used; the message names the file and line (or row)."""


@dataclass(frozen=True, init=False)
class Question:
    """A benchmark question: its client turns (one for a single-turn question) and category.

    ``text`` is the first turn, so code that only knows single-turn questions keeps working; code
    for which only single-turn text makes sense checks :attr:`is_multi_turn`.
    """

    question_id: str
    turns: tuple[str, ...]
    category: str | None = None

    def __init__(self, question_id: str, text: str | None = None, category: str | None = None, *,
                 turns: tuple[str, ...] | list[str] | None = None) -> None:
        if turns is None:
            if text is None:
                raise TypeError("Question needs text or turns")
            turns = (text,)
        turns = tuple(turns)
        if not turns:
            raise TypeError("Question needs at least one turn")
        if text is not None and text != turns[0]:
            raise TypeError("Question: text must equal the first turn")
        object.__setattr__(self, "question_id", question_id)
        object.__setattr__(self, "turns", turns)
        object.__setattr__(self, "category", category)

    @property
    def text(self) -> str:
        """The first client turn (the whole question when single-turn)."""
        return self.turns[0]

    @property
    def is_multi_turn(self) -> bool:
        return len(self.turns) > 1


def _from_record(rec: object, where: str) -> Question:
    if not isinstance(rec, dict):
        raise QuestionError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    qid = rec.get("question_id")
    if qid is None or (isinstance(qid, str) and not qid.strip()) or isinstance(qid, bool):
        raise QuestionError(f"{where}: missing question_id")
    if rec.get("turns") is not None:
        turns = rec["turns"]
        if isinstance(turns, tuple):
            turns = list(turns)
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise QuestionError(f"{where}: 'turns' must be a non-empty list of strings")
    else:
        text = rec.get("question", rec.get("text"))
        if not isinstance(text, str):
            raise QuestionError(f"{where}: needs 'turns' (FastChat) or a 'question' string")
        turns = [text]
    for k, turn in enumerate(turns, 1):
        if not turn.strip():
            if len(turns) == 1:
                raise QuestionError(f"{where}: question {qid} is empty")
            raise QuestionError(f"{where}: question {qid}: turn {k} of {len(turns)} is empty")
    category = rec.get("category")
    return Question(question_id=str(qid), turns=tuple(turns), category=None if category is None else str(category))


def _load_jsonl(path: Path) -> list[Question]:
    from mentalchat.core.fastchat import FastChatFormatError, read_questions

    try:
        records = read_questions(path)
    except FastChatFormatError as exc:
        raise QuestionError(str(exc)) from None
    from mentalchat.core.fastchat import read_jsonl

    # read_questions has checked the ids; map them back to their lines so errors name file and line
    lines = {str(rec.get("question_id")): n for n, rec in read_jsonl(path)}
    return [_from_record(rec, f"{path}:{lines[rec['question_id']]}") for rec in records]


def _load_parquet(path: Path) -> list[Question]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise QuestionError(f"{path}: not a readable Parquet file: {exc}") from None
    if "question_id" not in table.column_names:
        raise QuestionError(f"{path}: needs a question_id column (has {table.column_names})")
    out = []
    for i, rec in enumerate(table.to_pylist()):
        out.append(_from_record(rec, f"{path}: row {i}"))
    return out


def load_questions(path: str | Path, *, limit: int | None = None) -> list[Question]:
    """Read questions; duplicate ids are an error naming both places."""
    path = Path(path)
    if not path.is_file():
        raise QuestionError(f"question file not found: {path}")
    questions = _load_parquet(path) if path.suffix == ".parquet" else _load_jsonl(path)
    seen: dict[str, int] = {}
    for i, q in enumerate(questions):
        if q.question_id in seen:
            raise QuestionError(f"{path}: question_id {q.question_id!r} appears twice (entries {seen[q.question_id] + 1} and {i + 1})")
        seen[q.question_id] = i
    if not questions:
        raise QuestionError(f"{path}: holds no questions")
    return first_questions(questions, limit)


def first_questions(questions: list[Question], limit: int | None) -> list[Question]:
    """The first ``limit`` single-turn and the first ``limit`` multi-turn questions, in file order.

    Why: a pipeline appends its multi-turn questions after the benchmark, so a plain cut at N
    (a smoke run's 4 questions) would drop every multi-turn one and evaluate none of them.
    """
    if not limit:
        return questions
    kept: dict[bool, int] = {False: 0, True: 0}
    out = []
    for q in questions:
        if kept[q.is_multi_turn] < limit:
            kept[q.is_multi_turn] += 1
            out.append(q)
    return out
