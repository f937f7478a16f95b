"""Shared helpers for the judge-stage tests: small question/answer sets and judge responders."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mentalchat.core.rubric import METRICS
from mentalchat.schemas import get_table, write_table

ANSWER_MARK = "<assistant_reply>\n"


def write_inputs(folder: Path, n_questions: int = 4, models: tuple[str, ...] = ("m-a", "m-b")) -> tuple[Path, Path]:
    """A FastChat question file and an answers Parquet (every model answers every question)."""
    folder.mkdir(parents=True, exist_ok=True)
    qpath = folder / "question.jsonl"
    with qpath.open("w") as fh:
        for i in range(1, n_questions + 1):
            fh.write(json.dumps({"question_id": i, "category": "generic",
                                 "turns": [f"q{i}: I have felt low and tired for weeks ({i})."]}) + "\n")
    rows = [
        {"question_id": str(i), "model_id": m, "base_model": "tiny", "data_config": "base",
         "answer": f"answer to q{i} by {m}: that sounds hard; talking to someone you trust may help."}
        for i in range(1, n_questions + 1) for m in models
    ]
    apath = folder / "answers.parquet"
    write_table(get_table("answers").from_rows(rows), apath, "answers")
    return qpath, apath


def reply_of(messages: list[dict[str, str]]) -> str:
    """The graded answer inside one of our judge prompts (or a FastChat one)."""
    text = messages[-1]["content"]
    m = re.search(r"<assistant_reply>\n(.*?)\n</assistant_reply>", text, re.S)
    if m:
        return m.group(1)
    m = re.search(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", text, re.S)
    return m.group(1) if m else ""


def text_judge(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """A FastChat-style judge: scores grow with answer length; an empty answer gets 8 (like Gemini once did)."""
    answer = reply_of(messages)
    base = 8 if not answer.strip() else min(10, 2 + len(answer) // 60)
    lines = ["The reply is supportive but brief."]
    lines += [f"**{m}:** [[{max(1, base - (i % 2))}]]" for i, m in enumerate(METRICS)]
    lines.append(f"Rating: [[{base}]]")
    return "\n".join(lines)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    return write_inputs(tmp_path / "in")


@pytest.fixture
def make_inputs():
    """``make_inputs(folder, n_questions=4, models=(...))`` -> (question file, answers Parquet)."""
    return write_inputs


@pytest.fixture
def judge_responder():
    """The FastChat-style text judge responder (see :func:`text_judge`)."""
    return text_judge
