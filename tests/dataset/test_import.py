"""``mentalchat import-dataset``: released-format files → a qa_pairs folder with a card.

The fixtures are small files in the released layout (header ``instruction,input,output``, one long
instruction paragraph repeated on every row, quoted fields spanning lines), written for this test.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mentalchat.cli import main
from mentalchat.core.decontamination import DecontaminationConfig
from mentalchat.core.released_data import ReleasedDataError, pair_id, read_released
from mentalchat.dataset.import_command import import_dataset
from mentalchat.io import read_done_marker
from mentalchat.schemas import read_table

# Our own paraphrase of the kind of paragraph the released files repeat on every row.
INSTRUCTION = (
    "You are a patient and warm counselling assistant. A person will describe, in their own words, "
    "something that weighs on their mind: worries about work or school, trouble at home, low mood, "
    "sleepless nights, or feelings they cannot name. Read everything they say before answering. "
    "Reflect back what you heard so they feel understood, avoid judging or lecturing, and offer a few "
    "concrete, realistic ideas they could try this week. Keep a calm, respectful tone, write in plain "
    "language, and encourage them to reach out to people they trust."
)

INTERVIEW_ROWS = [
    (("My mother moved in with us after her fall, and I feel like I am failing everyone.\n"
     "At night I lie awake making lists."), ("Caring for a parent while keeping a family going is a lot.\n\n"
     "It might help to share one task with someone, even a small one, and notice how that feels.")),
    ('She says "just relax", but my chest gets tight, every single evening.',
     ("A tight chest in the evening, when others say relax, can feel lonely. Slow breathing, four counts "
     "in and six out, is one thing to try.")),
    ("", "An answer without a question."),  # empty input
    ('She says "just relax", but my chest gets tight, every single evening.',  # duplicate of row 2
     ("A tight chest in the evening, when others say relax, can feel lonely. Slow breathing, four counts "
     "in and six out, is one thing to try.")),
    ("I started a new job and I dread Sunday nights.", ("Many people feel that dread. What part of Monday "
     "worries you most? Naming it can shrink it.")),
]

SYNTHETIC_ROWS = [
    ("Ever since the exam results came out I have avoided my friends, and I do not know why.",
     "It sounds as if the results hurt more than you expected. Could you tell one friend how it went?"),
    ("I keep checking my phone for messages from my ex.", ("That pull is very common after a break-up. "
     "Try putting the phone in another room for an hour and see what comes up.")),
]


def _csv_text(rows: list[tuple[str, str]], *, crlf: bool = False, extra: dict[str, list[str]] | None = None) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n" if crlf else "\n")
    extra = extra or {}
    writer.writerow(["instruction", "input", "output", *extra])
    for i, (inp, out) in enumerate(rows):
        writer.writerow([INSTRUCTION, inp, out, *(v[i] for v in extra.values())])
    return buf.getvalue()


@pytest.fixture
def released(tmp_path: Path) -> Path:
    folder = tmp_path / "released"
    folder.mkdir()
    (folder / "Interview_Data_6K.csv").write_text(_csv_text(INTERVIEW_ROWS, crlf=True), encoding="utf-8")
    (folder / "Synthetic_Data_10K.csv").write_text("\ufeff" + _csv_text(SYNTHETIC_ROWS), encoding="utf-8")
    return folder


def test_released_csvs_become_a_dataset_with_card(released: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    stats = import_dataset([released], out, decontamination=DecontaminationConfig(), echo=lambda m: None)
    qa = read_table(out / "qa_pairs.parquet", "qa_pairs").to_pylist()
    assert [r["source"] for r in qa] == ["interview"] * 3 + ["synthetic"] * 2
    assert {r["instruction"] for r in qa} == {INSTRUCTION}
    first = qa[0]
    assert first["input"] == INTERVIEW_ROWS[0][0] and first["output"] == INTERVIEW_ROWS[0][1]  # newlines kept
    assert first["id"] == pair_id(*INTERVIEW_ROWS[0])
    # provenance: the line each record starts on (row 1 spans lines 2-5, row 2 starts on line 6)
    assert [r["page_ref"] for r in qa[:3]] == ["Interview_Data_6K.csv:2", "Interview_Data_6K.csv:6",
                                              "Interview_Data_6K.csv:9"]
    assert [r["page_ref"] for r in qa[3:]] == ["Synthetic_Data_10K.csv:2", "Synthetic_Data_10K.csv:3"]
    rejects = read_table(out / "rejects.parquet", "rejects").to_pylist()
    assert sorted((r["filter"], r["page_ref"]) for r in rejects) == [
        ("duplicate", "Interview_Data_6K.csv:8"), ("missing", "Interview_Data_6K.csv:7")]
    assert "same input and output as Interview_Data_6K.csv:6" in next(
        r["reason"] for r in rejects if r["filter"] == "duplicate")
    assert stats["import"]["rows"] == 7 and stats["import"]["empty"] == 1 and stats["import"]["duplicate"] == 1
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "imported by `mentalchat import-dataset`" in card and "## Imported files" in card
    assert "| Interview_Data_6K.csv | csv | file name (interview 5) | 5 | 3 | 1 | 1 | 0 |" in card
    assert "## Benchmark overlap (decontamination)" in card and "flagged: **0**" in card
    assert (out / "figures" / "input_lengths.png").is_file()
    assert json.loads((out / "decontamination.json").read_text())["checked"] == 5
    assert read_done_marker(out)["stage"] == "import-dataset"
    again = import_dataset([released], tmp_path / "ds2", echo=lambda m: None)
    assert again["config_hash"] != stats["config_hash"]  # decontamination off: other options


def test_a_pair_copying_a_benchmark_question_is_counted_in_the_card(released: Path, tmp_path: Path) -> None:
    questions = tmp_path / "question.jsonl"
    copied = SYNTHETIC_ROWS[0][0]
    questions.write_text(json.dumps({"question_id": 7, "category": "x", "turns": [copied + " Any advice?"]}) + "\n"
                         + json.dumps({"question_id": 8, "category": "x", "turns": ["How do I sleep better?"]}) + "\n",
                         encoding="utf-8")
    out = tmp_path / "ds"
    stats = import_dataset([released], out, decontamination=DecontaminationConfig(), benchmark=questions,
                           echo=lambda m: None)
    assert stats["decontamination"]["flagged"] == 1
    assert stats["decontamination"]["flagged_by_source"] == {"synthetic": 1}
    report = json.loads((out / "decontamination.json").read_text())
    assert report["pairs"][0]["question_id"] == "7" and report["pairs"][0]["id"] == pair_id(*SYNTHETIC_ROWS[0])
    assert "flagged: **1** (synthetic 1)" in (out / "README.md").read_text(encoding="utf-8")


def test_source_column_then_file_name_then_option(tmp_path: Path) -> None:
    rows = SYNTHETIC_ROWS
    both = tmp_path / "Interview_mixed.csv"
    both.write_text(_csv_text(rows, extra={"source": ["synthetic", ""]}), encoding="utf-8")
    assert [p["source"] for p in read_released(both).pairs] == ["synthetic", "interview"]
    neutral = tmp_path / "pairs.csv"
    neutral.write_text(_csv_text(rows), encoding="utf-8")
    assert {p["source"] for p in read_released(neutral, source="interview").pairs} == {"interview"}
    with pytest.raises(ReleasedDataError, match=r"pairs\.csv:2: cannot tell whether this row is interview or "
                                                 r"synthetic.*--source"):
        read_released(neutral)
    wrong = tmp_path / "w.csv"
    wrong.write_text(_csv_text(rows, extra={"source": ["synthetic", "forum"]}), encoding="utf-8")
    with pytest.raises(ReleasedDataError, match=r"w\.csv:3: source 'forum'"):
        read_released(wrong)


def test_jsonl_and_parquet_in_the_same_columns(tmp_path: Path) -> None:
    jl = tmp_path / "extra.jsonl"
    jl.write_text("\n".join(json.dumps({"Instruction": INSTRUCTION, "input": i, "output": o, "source": "synthetic",
                                        "topic": "grief"}) for i, o in SYNTHETIC_ROWS) + "\n\n", encoding="utf-8")
    pq.write_table(pa.table({"instruction": [INSTRUCTION] * 2, "input": [INTERVIEW_ROWS[0][0], None],
                             "output": [INTERVIEW_ROWS[0][1], "x"]}), tmp_path / "Interview_part.parquet")
    data = read_released(tmp_path)
    assert [(p["source"], p["page_ref"]) for p in data.pairs] == [  # files in name order
        ("interview", "Interview_part.parquet:1"), ("synthetic", "extra.jsonl:1"), ("synthetic", "extra.jsonl:2")]
    assert [p["topic"] for p in data.pairs] == [None, "grief", "grief"]
    assert [r["page_ref"] for r in data.rejects] == ["Interview_part.parquet:2"]
    no_instruction = tmp_path / "bare" / "Synthetic.jsonl"
    no_instruction.parent.mkdir()
    no_instruction.write_text(json.dumps({"input": "a question here", "output": "an answer"}) + "\n", encoding="utf-8")
    with pytest.raises(ReleasedDataError, match=r"missing column\(s\) \['instruction'\]"):
        read_released(no_instruction)
    assert read_released(no_instruction, instruction="Be kind.").pairs[0]["instruction"] == "Be kind."


BAD = {
    "Synthetic_cols.csv": (b"instruction,question,output\nx,y,z\n", r"Synthetic_cols\.csv:1: missing column\(s\) \['input'\]"),
    "Synthetic_latin1.csv": (_csv_text(SYNTHETIC_ROWS).encode() + "x,caf\u00e9,y\n".encode("latin-1"),
                             r"Synthetic_latin1\.csv:4: not UTF-8 \(byte 0xe9\)"),
    "Synthetic_binary.parquet": (b"PAR1\x00\x00garbage", r"Synthetic_binary\.parquet: not a readable Parquet file"),
    "Synthetic_binary.csv": (b"\x89PNG\r\n\x1a\n\x00\x00\x00", r"Synthetic_binary\.csv: binary file"),
    "Synthetic_empty.csv": (b"", r"Synthetic_empty\.csv: empty file"),
    "Synthetic_header.csv": (b"instruction,input,output\n", r"Synthetic_header\.csv: holds no rows"),
    "Synthetic_bad.jsonl": (b'{"instruction": "i", "input": "a", "output": "b"}\n{"input": "a", "output"\n',
                            r"Synthetic_bad\.jsonl:2: invalid JSON"),
    "Synthetic_array.jsonl": (b'["instruction", "input", "output"]\n', r"Synthetic_array\.jsonl:1: expected a JSON object"),
    "Synthetic_fields.csv": (b'instruction,input,output\ni,"an unclosed quote,b\nc,d,e\n',
                             r"Synthetic_fields\.csv:2: (record has 2 fields|malformed CSV record)"),
    "Synthetic_number.jsonl": (b'{"instruction": "i", "input": 3, "output": "b"}\n',
                               r"Synthetic_number\.jsonl:1: column 'input' must be text"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_names_file_and_line_and_writes_nothing(tmp_path: Path, released: Path, name: str) -> None:
    data, message = BAD[name]
    bad = released / name
    bad.write_bytes(data)
    out = tmp_path / "ds"
    with pytest.raises(ReleasedDataError, match=message) as err:
        import_dataset([released], out, echo=lambda m: None)
    assert err.value.path is not None and Path(err.value.path).name == name
    assert not out.exists() and not list(tmp_path.glob(".ds*"))


def test_the_command_line(released: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ds"
    assert main(["import-dataset", "--input", str(released / "Interview_Data_6K.csv"), "--input",
                 str(released / "Synthetic_Data_10K.csv"), "--output", str(out), "decontamination.method=minhash"]) == 0
    assert "5 pairs, 2 rejected, 0 near benchmark questions ->" in capsys.readouterr().out
    assert json.loads((out / "decontamination.json").read_text())["method"] == "minhash"
    neutral = tmp_path / "pairs.csv"
    neutral.write_text(_csv_text(SYNTHETIC_ROWS), encoding="utf-8")
    assert main(["import-dataset", "--input", str(neutral), "--output", str(tmp_path / "x")]) == 2
    assert "error: " in capsys.readouterr().err
    assert main(["import-dataset", "--input", str(neutral), "--output", str(tmp_path / "x"), "--source",
                 "synthetic", "decontamination.enabled=false"]) == 0
    assert "Not checked" in (tmp_path / "x" / "README.md").read_text(encoding="utf-8")


def test_imported_pairs_get_the_same_crisis_audit_as_a_built_dataset(tmp_path: Path) -> None:
    """Import runs the shared detector (rules + classifier by default), not the rules alone."""
    from mentalchat.safety import CrisisDetectorConfig

    rows = [("Nobody would even notice the empty chair at dinner after next week.",
             "It sounds like you feel invisible at home. What would you like them to notice?"),
            ("my boyfriend reads all my messages and I am not allowed to see my friends anymore",
             "That sounds controlling. Please call a domestic abuse helpline today; you deserve to be safe."),
            *SYNTHETIC_ROWS]
    src = tmp_path / "Synthetic_pairs.csv"
    src.write_text(_csv_text(rows), encoding="utf-8")
    import_dataset([src], tmp_path / "default", echo=lambda m: None)
    qa = read_table(tmp_path / "default" / "qa_pairs.parquet", "qa_pairs").to_pandas().set_index("input")
    first, second = rows[0][0], rows[1][0]
    assert bool(qa.loc[first, "crisis_flag"]) and qa.loc[first, "crisis_escalated"] == False  # noqa: E712
    assert bool(qa.loc[second, "crisis_flag"]) and qa.loc[second, "crisis_escalated"] == True  # noqa: E712
    assert not qa.loc[SYNTHETIC_ROWS[0][0], "crisis_flag"]
    # (SYNTHETIC_ROWS[1], "I keep checking my phone for messages from my ex", is flagged as abuse by the
    # classifier: a known false positive of its bag of words, docs/safety.md)
    import_dataset([src], tmp_path / "rules", crisis_detector=CrisisDetectorConfig(layers=["rules"]),
                   echo=lambda m: None)
    rules = read_table(tmp_path / "rules" / "qa_pairs.parquet", "qa_pairs").to_pandas()
    assert not rules.crisis_flag.any()  # the rules alone miss both wordings
