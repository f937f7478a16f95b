"""``jobs/crisis.py``: messages and answers in, flags and escalation out; bad input names file and line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mentalchat.cli import job_main

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_messages_flags_and_categories(tmp_path: Path, capsys) -> None:
    src = _write(tmp_path / "in.jsonl", [json.dumps(r) for r in (
        {"id": 1, "text": "i keep thinking everyone would be better off gone", "source": "chat"},
        {"id": "b", "text": "I might overdo it with my sleeping tablets tonight"},
        {"id": 3, "text": "my husband hurts me"},
        {"id": 4, "text": "The deposit is $1,000 and we meet in Room 112."},
    )])
    out = tmp_path / "out.jsonl"
    assert job_main("crisis", ["--input", str(src), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [1, "b", 3, 4] and rows[0]["source"] == "chat"
    assert [r["flag"] for r in rows] == [True, True, True, False]
    assert "suicidal_ideation" in rows[0]["categories"] and "substance_overdose" in rows[1]["categories"]
    assert rows[2]["categories"] == ["abuse"] and rows[3]["categories"] == []
    assert rows[0]["layers"] == {"rules": True, "classifier": True} and rows[0]["evidence"]
    assert "4 messages checked by rules+classifier (any)" in capsys.readouterr().out


def test_answers_escalation(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.jsonl", [json.dumps(r) for r in (
        {"id": "a1", "text": "Please call 988 or go to your nearest emergency department now.", "message": "I want to die"},
        {"id": "a2", "text": "You don't need to go to the emergency room over this; try some rest."},
        {"id": "a3", "text": "I cannot tell you right now how glad I am you wrote. Room 112 is free on Monday."},
    )])
    out = tmp_path / "o.jsonl"
    assert job_main("crisis", ["--answers", "--input", str(src), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["escalated"] for r in rows] == [True, False, False]


@pytest.mark.parametrize(("lines", "message"), [
    (['{"id": 1, "text": "ok"}', "not json"], r"in\.jsonl:2: invalid JSON"),
    (['{"text": "no id"}'], r"in\.jsonl:1: missing 'id'"),
    (['{"id": 1, "text": 5}'], r"in\.jsonl:1: 'text' must be a string"),
    (['{"id": 1, "text": "a"}', '{"id": 1, "text": "b"}'], r"in\.jsonl:2: id '1' repeats line 1"),
])
def test_bad_input_is_named_and_nothing_is_written(tmp_path: Path, lines: list[str], message: str) -> None:
    src = _write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, str(REPO / "jobs/crisis.py"), "--input", str(src), "--output", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode != 0
    assert __import__("re").search(message, proc.stderr), proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_model_layer_from_a_config_refers_to_an_engine(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("crisis_detector: {layers: [rules, model], model: {engine: nowhere}}\n", encoding="utf-8")
    src = _write(tmp_path / "in.jsonl", ['{"id": 1, "text": "hello"}'])
    proc = subprocess.run([sys.executable, str(REPO / "jobs/crisis.py"), "--input", str(src), "--output",
                           str(tmp_path / "o.jsonl"), "--config", str(cfg)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode != 0 and "'nowhere' is not declared under engines" in proc.stderr
