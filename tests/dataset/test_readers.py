"""Readers: page splitting per format and clear errors for bad files and lines."""

from __future__ import annotations

import json
from pathlib import Path

from mentalchat.dataset.readers import read_file, read_transcripts, split_by_words, transcript_id
from mentalchat.dataset.transcripts import generate_transcripts, write_transcripts


def test_txt_form_feeds_are_pages(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("Interviewer: one?\nCaregiver: first page.\n\fInterviewer: two?\nCaregiver: second.\n\f\n", encoding="utf-8")
    ts, issues = read_file(f, tmp_path)
    assert issues == []
    assert [p.number for p in ts[0].pages] == [1, 2]
    assert ts[0].pages[1].text.startswith("Interviewer: two?")


def test_txt_without_form_feeds_cut_by_word_budget(tmp_path: Path) -> None:
    lines = [f"Caregiver: {'word ' * 30}".strip() for _ in range(10)]  # 31 words a line
    f = tmp_path / "b.txt"
    f.write_text("\n".join(lines), encoding="utf-8")
    ts, _ = read_file(f, tmp_path, page_words=100)
    sizes = [len(p.text.split()) for p in ts[0].pages]
    assert all(s <= 100 for s in sizes) and sum(sizes) == 310 and len(sizes) == 4
    # a single line longer than the budget is cut at sentences/words, never dropped
    assert sum(len(p.split()) for p in split_by_words(["A b c. " * 100], 50)) == 300


def test_jsonl_pages_turns_and_several_transcripts(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl"
    rows = [
        {"transcript_id": "x", "page": 1, "speaker": "Interviewer", "text": "How are you?"},
        {"transcript_id": "x", "page": 1, "speaker": "Caregiver", "text": "Tired."},
        {"transcript_id": "x", "page": 2, "text": "Interviewer: Next?\nCaregiver: Yes."},
        {"transcript_id": "y", "speaker": "Caregiver", "text": "A turn without a page."},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    ts, issues = read_file(f, tmp_path)
    assert issues == []
    by = {t.transcript_id: t for t in ts}
    assert by[transcript_id("c.jsonl", "x")].pages[0].text == "Interviewer: How are you?\nCaregiver: Tired."
    assert len(by[transcript_id("c.jsonl", "x")].pages) == 2
    assert by[transcript_id("c.jsonl", "y")].pages[0].text == "Caregiver: A turn without a page."


def test_malformed_jsonl_lines_are_named_and_skipped(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"page": 1, "text": "fine"}\n{not json\n[1, 2]\n{"page": 0, "text": "x"}\n{"text": 5}\n'
                 '{"page": 1, "text": "also fine"}\n', encoding="utf-8")
    ts, issues = read_file(f, tmp_path)
    assert [i.line for i in issues] == [2, 3, 4, 5]
    assert all(i.kind == "line" and str(i).startswith(f"{f}:") for i in issues)
    assert "malformed JSON" in str(issues[0])
    assert ts[0].pages[0].text == "fine\nalso fine"


def test_bad_files_get_clear_errors_and_the_rest_is_read(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b"  \n\n ")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20)
    (tmp_path / "latin1.txt").write_bytes("Caregiver: caf\u00e9 au lait".encode("latin-1"))
    (tmp_path / "huge.txt").write_text("Caregiver: " + "word " * 5000, encoding="utf-8")
    (tmp_path / "broken.docx").write_bytes(b"PK\x03\x04 this is not a real zip")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "good.txt").write_text("Interviewer: Hi?\nCaregiver: Hello.", encoding="utf-8")
    report = read_transcripts(tmp_path, max_file_bytes=10_000)
    msgs = {Path(i.path).name: i.reason for i in report.issues}
    assert msgs["empty.txt"] == "empty file" and msgs["blank.txt"] == "empty file"
    assert "binary" in msgs["binary.txt"]
    assert "not valid UTF-8 at byte 14 (line 1)" in msgs["latin1.txt"]
    assert "over the 0.0 MB limit" in msgs["huge.txt"] or "limit" in msgs["huge.txt"]
    assert ".docx" in msgs["broken.docx"]
    assert "unsupported file type .pdf" in msgs["notes.pdf"]
    assert report.skipped_files == 7 and report.files_read == 8
    assert len(report.transcripts) == 1


def test_utf16_with_bom_is_read(tmp_path: Path) -> None:
    f = tmp_path / "w.txt"
    f.write_bytes("Caregiver: r\u00e9sum\u00e9".encode("utf-16"))
    ts, issues = read_file(f, tmp_path)
    assert issues == [] and ts[0].pages[0].text == "Caregiver: r\u00e9sum\u00e9"


def test_generated_formats_round_trip(tmp_path: Path) -> None:
    gen = generate_transcripts(3, seed=4, pages=(2, 3))
    write_transcripts(gen, tmp_path, formats=("txt", "jsonl", "docx"))
    report = read_transcripts(tmp_path)
    assert report.issues == []
    got = {Path(t.source).stem: [p.text for p in t.pages] for t in report.transcripts}
    for t in gen:
        assert got[t.transcript_id] == t.page_texts()


def test_transcript_ids_hold_no_file_names(tmp_path: Path) -> None:
    f = tmp_path / "Rosalind_Petrakis_interview.txt"
    f.write_text("Caregiver: hello", encoding="utf-8")
    ts, _ = read_file(f, tmp_path)
    assert ts[0].transcript_id.startswith("t-") and "rosalind" not in ts[0].transcript_id.lower()
