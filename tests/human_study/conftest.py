"""Small answers and questions for the human-study tests, and Label Studio-shaped annotations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mentalchat.core.rubric import METRIC_KEYS
from mentalchat.schemas import ANSWERS, write_table

MODELS = [("llama-base", "llama", "base"), ("llama-syn", "llama", "synthetic"),
          ("mistral-base", "mistral", "base"), ("mistral-int", "mistral", "interview")]


def make_answers(n_questions: int = 12, models: list[tuple[str, str, str]] = MODELS) -> list[dict[str, Any]]:
    rows = []
    for q in range(1, n_questions + 1):
        for model, base, cfg in models:
            rows.append({"question_id": str(q), "model_id": model, "base_model": base, "data_config": cfg,
                         "answer": f"a reply, number {len(rows) + 1}, to message {q}"})
    return rows


@pytest.fixture
def study_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """(answers.parquet, questions.jsonl): 12 questions x 4 models, plus a two-turn question's turns."""
    rows = make_answers()
    rows += [{"question_id": "mt1", "model_id": m, "base_model": b, "data_config": c, "answer": f"t{t}", "turn": t}
             for m, b, c in MODELS for t in (1, 2)]
    answers = write_table(ANSWERS.from_rows(rows), tmp_path / "answers.parquet", "answers")
    questions = tmp_path / "questions.jsonl"
    lines = [json.dumps({"question_id": str(q), "turns": [f"client message {q}"]}) for q in range(1, 13)]
    lines.append(json.dumps({"question_id": "mt1", "turns": ["first", "second"]}))
    questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return answers, questions


def ls_result(scores: list[int | None], overall: int | None, *, crisis: bool = False,
              comment: str | None = None) -> list[dict]:
    """An annotation's ``result`` as Label Studio writes it for our labeling config (None: not rated)."""
    out: list[dict[str, Any]] = [
        {"from_name": key, "to_name": "answer", "type": "rating", "value": {"rating": int(s)}}
        for key, s in zip(METRIC_KEYS, scores, strict=True) if s is not None
    ]
    if overall is not None:
        out.append({"from_name": "overall", "to_name": "answer", "type": "rating", "value": {"rating": int(overall)}})
    if crisis:
        out.append({"from_name": "crisis", "to_name": "answer", "type": "choices",
                    "value": {"choices": ["Crisis concern"]}})
    if comment:
        out.append({"from_name": "comment", "to_name": "answer", "type": "textarea", "value": {"text": [comment]}})
    return out


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory):
    """A real Label Studio server (its own venv, SQLite, 127.0.0.1) for the whole session."""
    from mentalchat.testing.labelstudio_server import LabelStudioServer

    with LabelStudioServer(tmp_path_factory.mktemp("label-studio")) as server:
        yield server
