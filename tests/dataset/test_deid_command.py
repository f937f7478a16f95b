"""``jobs/deidentify.py``: the audit CLI on good input, on a transcript folder, and on every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mentalchat.cli import job_main

REPO = Path(__file__).resolve().parents[2]


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_in_jsonl_out_with_summary(tmp_path: Path, capsys) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [
        {"id": 1, "text": "My name is Rosalind Okafor and my number is 415-555-0132.", "transcript": "t1"},
        {"id": "b", "text": "Rosalind said she slept badly.", "transcript": "t1"},
        {"id": 3, "text": "Nothing identifying here, just tiredness."},
    ])
    out = tmp_path / "out.jsonl"
    assert job_main("deidentify", ["--input", str(src), "--output", str(out)]) == 0
    rows = _read(out)
    assert [r["id"] for r in rows] == [1, "b", 3]  # the same ids, in input order within a transcript
    text = " ".join(r["text"] for r in rows)
    assert "Rosalind" not in text and "Okafor" not in text and "555-0132" not in text
    # one transcript: the name found on line 1 is removed on line 2 with the same placeholder
    assert rows[0]["text"].split()[3] in rows[1]["text"]
    assert rows[2]["text"] == "Nothing identifying here, just tiredness." and rows[2]["counts"] == {}
    summary = capsys.readouterr().out
    assert "3 records (2 documents)" in summary and "NAME" in summary and "PHONE" in summary


def test_transcript_folder_like_the_builder(tmp_path: Path) -> None:
    folder = tmp_path / "transcripts"
    folder.mkdir()
    (folder / "a.txt").write_text("INTERVIEWER: How is Walter?\nCAREGIVER: Walter Nakamura is worse.\f"
                                  "CAREGIVER: Call me at 212-555-0188.", encoding="utf-8")
    out = tmp_path / "audit.jsonl"
    assert job_main("deidentify", ["--input", str(folder), "--output", str(out)]) == 0
    rows = _read(out)
    assert [r["page"] for r in rows] == [1, 2] and len({r["transcript"] for r in rows}) == 1
    assert "Walter" not in rows[0]["text"] and "555-0188" not in rows[1]["text"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": 1, "text": "fine"}\n{"id": 2, "text": \n', r"in\.jsonl:2: invalid JSON"),
        (b'{"id": 1, "text": "fine"}\n["not", "an", "object"]\n', r"in\.jsonl:2: expected a JSON object"),
        (b'{"text": "no id"}\n', r"in\.jsonl:1: missing 'id'"),
        (b'{"id": 7}\n', r"in\.jsonl:1: missing 'text'"),
        (b'{"id": 7, "text": 12}\n', r"in\.jsonl:1: 'text' must be a string"),
        (b'{"id": 1, "text": "a"}\n\n{"id": "1", "text": "b"}\n', r"in\.jsonl:3: id '1' repeats line 1"),
        (b"", r"in\.jsonl: empty file"),
        (b"   \n\n", r"in\.jsonl: empty file"),
        (b"\x00\x01\x02binary", r"in\.jsonl: binary file"),
        (b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "caf\xe9"}\n', r"in\.jsonl:2: not UTF-8"),
    ],
)
def test_bad_input_names_file_and_line_and_writes_nothing(tmp_path: Path, capsys, content: bytes, message: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(content)
    out = tmp_path / "out.jsonl"
    assert job_main("deidentify", ["--input", str(src), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and __import__("re").search(message, err), err
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*"))  # nothing half-written


def test_missing_input_and_overrides(tmp_path: Path, capsys) -> None:
    assert job_main("deidentify", ["--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")]) == 2
    assert "input not found" in capsys.readouterr().err
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "Call 415-555-0132 today."}])
    assert job_main("deidentify", ["--input", str(src), "--output", str(tmp_path / "o.jsonl"), "deid.ner=none"]) == 0
    assert "555-0132" not in _read(tmp_path / "o.jsonl")[0]["text"]
    assert job_main("deidentify", ["--input", str(src), "--output", str(tmp_path / "o2"), "deid.ner=sometimes"]) == 2
    assert "dataset.deid.ner" in capsys.readouterr().err


def test_the_job_script_runs(tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": "x", "text": "Email me at jo.bloggs@example.org."}])
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "deidentify.py"), "--input", str(src),
                           "--output", str(out), "deid.ner=none"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "jo.bloggs" not in out.read_text() and "EMAIL" in proc.stdout
