"""Table registry: validating reader, atomic writer, clear errors naming the file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mentalchat.schemas import TABLES, SchemaError, get_table, read_table, write_table


def _judgment_row(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "question_id": "1",
        "model": "m",
        "judge": "gpt-4o",
        "metric": "Active Listening",
        "score": 7.0,
        "parse_status": "ok",
    }
    row.update(kw)
    return row


def test_every_table_has_metadata_and_unique_columns() -> None:
    assert {"pages", "qa_pairs", "rejects", "answers", "judgments"} <= set(TABLES)
    for spec in TABLES.values():
        assert len(set(spec.columns)) == len(spec.columns), spec.name
        assert spec.empty().schema.metadata[b"mentalchat.table"] == spec.name.encode()


def test_roundtrip(tmp_path: Path) -> None:
    spec = get_table("judgments")
    table = spec.from_rows([_judgment_row(), _judgment_row(question_id="2", score=None)])
    path = write_table(table, tmp_path / "j.parquet", spec)
    back = read_table(path, "judgments")
    assert back.num_rows == 2
    assert back.column("score").to_pylist() == [7.0, None]
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind


def test_from_rows_rejects_unknown_and_missing_required() -> None:
    spec = get_table("judgments")
    with pytest.raises(SchemaError, match="unknown columns"):
        spec.from_rows([_judgment_row(bogus=1)])
    with pytest.raises(SchemaError, match="question_id"):
        spec.from_rows([_judgment_row(question_id=None)])


def test_reader_names_file_and_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"question_id": ["1"], "model": ["m"]}), path)
    with pytest.raises(SchemaError) as err:
        read_table(path, "judgments")
    assert str(path) in str(err.value) and "judge" in str(err.value)


def test_reader_refuses_other_table_and_newer_version(tmp_path: Path) -> None:
    answers = get_table("answers")
    path = write_table(
        answers.from_rows([{"question_id": "1", "model_id": "m", "answer": "hi"}]), tmp_path / "a.parquet", answers
    )
    with pytest.raises(SchemaError, match="is a 'answers' table"):
        read_table(path, "judgments")
    t = pq.read_table(path)
    newer = t.replace_schema_metadata({b"mentalchat.table": b"answers", b"mentalchat.schema_version": b"99"})
    pq.write_table(newer, path)
    with pytest.raises(SchemaError, match="newer"):
        read_table(path, "answers")


def test_reader_casts_compatible_types_and_reads_folders(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        pq.write_table(
            pa.table({"question_id": [str(i)], "model_id": ["m"], "answer": ["x"], "tokens_out": pa.array([5], pa.int32())}),
            folder / f"part-{i}.parquet",
        )
    table = read_table(folder, "answers")
    assert table.num_rows == 2 and table.schema.field("tokens_out").type == pa.int64()


def test_reader_on_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(SchemaError, match="x.parquet"):
        read_table(path, "answers")
