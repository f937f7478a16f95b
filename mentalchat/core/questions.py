"""Benchmark questions from a FastChat ``question.jsonl`` or a Parquet file.

Both the answer and the judge stages read questions through :func:`load_questions`, so a question id
means the same thing in every table (ids are strings: FastChat's integer ids become ``"1"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mentalchat.errors import MentalchatError

__all__ = ["Question", "QuestionError", "bundled_questions", "load_questions"]


def bundled_questions() -> Path:
    """Ten counselling questions written for the project (FastChat format): the default benchmark of a
    pipeline run, of the quickstart and smoke configs, and of training-data decontamination."""
    return Path(str(resources.files("mentalchat") / "data" / "samples" / "questions.jsonl"))


class QuestionError(MentalchatError, ValueError):
    """A question file that cannot be used; the message names the file and line (or row)."""


@dataclass(frozen=True)
class Question:
    question_id: str
    text: str
    category: str | None = None


def _from_record(rec: object, where: str) -> Question:
    if not isinstance(rec, dict):
        raise QuestionError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    qid = rec.get("question_id")
    if qid is None or (isinstance(qid, str) and not qid.strip()) or isinstance(qid, bool):
        raise QuestionError(f"{where}: missing question_id")
    if rec.get("turns") is not None:
        turns = rec["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise QuestionError(f"{where}: 'turns' must be a non-empty list of strings")
        if len(turns) > 1:
            raise QuestionError(f"{where}: question {qid} has {len(turns)} turns; only single-turn is supported")
        text = turns[0]
    else:
        text = rec.get("question", rec.get("text"))
        if not isinstance(text, str):
            raise QuestionError(f"{where}: needs 'turns' (FastChat) or a 'question' string")
    if not text.strip():
        raise QuestionError(f"{where}: question {qid} is empty")
    category = rec.get("category")
    return Question(question_id=str(qid), text=text, category=None if category is None else str(category))


def _load_jsonl(path: Path) -> list[Question]:
    from mentalchat.core.fastchat import FastChatFormatError, read_questions

    try:
        records = read_questions(path)
    except FastChatFormatError as exc:
        raise QuestionError(str(exc)) from None
    return [_from_record(rec, f"{path}: question {rec['question_id']}") for rec in records]


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
    return questions[:limit] if limit else questions
