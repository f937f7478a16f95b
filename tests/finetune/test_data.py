"""Data configurations and held-out splits."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mentalchat.finetune.data import DataError, make_splits, select_config, split_table
from mentalchat.schemas import SchemaError, get_table
from mentalchat.testing.finetune_data import qa_rows, write_qa_pairs


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return get_table("qa_pairs").from_rows(qa_rows(n_synthetic=40, n_interview=30))


def test_data_configurations_select_by_source(table: pa.Table) -> None:
    assert select_config(table, "synthetic").num_rows == 40
    assert select_config(table, "interview").num_rows == 30
    assert select_config(table, "combined").num_rows == 70
    only_synthetic = select_config(table, "synthetic")
    with pytest.raises(DataError, match=r"ds\.parquet: data configuration 'interview' is empty.*synthetic"):
        select_config(only_synthetic, "interview", source="ds.parquet")


def test_split_is_stable_and_never_leaks_across_configurations(table: pa.Table) -> None:
    kw = {"eval_fraction": 0.2, "eval_max_rows": 100, "seed": 3}
    syn = split_table(select_config(table, "synthetic"), **kw)
    comb = split_table(select_config(table, "combined"), **kw)
    again = split_table(select_config(table, "synthetic"), **kw)
    syn_eval = set(syn.eval.column("id").to_pylist())
    comb_eval = set(comb.eval.column("id").to_pylist())
    assert syn_eval == set(again.eval.column("id").to_pylist())
    assert syn_eval and syn_eval <= comb_eval  # held out of synthetic => held out of combined
    assert not comb_eval & set(comb.train.column("id").to_pylist())
    assert syn.train.num_rows + syn.eval.num_rows == 40
    capped = split_table(select_config(table, "combined"), eval_fraction=0.5, eval_max_rows=3, seed=0)
    assert capped.eval.num_rows == 3
    with pytest.raises(DataError, match="at least 2 rows"):
        split_table(table.slice(0, 1), **kw)


def test_make_splits_reports_schema_and_empty_configurations(tmp_path: Path) -> None:
    good = write_qa_pairs(tmp_path / "qa.parquet", n_synthetic=10, n_interview=0)
    with pytest.raises(DataError, match="'interview' is empty"):
        make_splits(good, ["synthetic", "interview"], eval_fraction=0.1, eval_max_rows=4, seed=0)
    bad = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"question": ["q"], "answer": ["a"]}), bad)
    with pytest.raises(SchemaError, match=r"wrong\.parquet.*lacks columns"):
        make_splits(bad, ["synthetic"], eval_fraction=0.1, eval_max_rows=4, seed=0)
