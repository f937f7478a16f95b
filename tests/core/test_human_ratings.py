"""Human ratings CSV → judgments rows with judge ``human:<rater>``."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.core.human_ratings import HumanRatingsError, read_human_ratings
from mentalchat.core.model_names import paper_model_map
from mentalchat.core.rubric import METRIC_KEYS, METRICS


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_reads_ratings_with_names_or_keys(tmp_path: Path) -> None:
    header = ["rater", "question_id", "model", *METRICS[:4], *METRIC_KEYS[4:], "overall", "comment"]
    rows = [
        ["alice", "1", "zephyr-7b-gpt-1025", "8", "7", "9", "8", "7", "", "8", "8", "good"],
        ["bob", "1", "zephyr-7b-gpt-1025", "6", "6", "7", "8", "6", "5", "7", "", ""],
    ]
    table = read_human_ratings(_write(tmp_path / "r.csv", header, rows), paper_model_map())
    df = table.to_pandas()
    assert len(df) == 14
    assert set(df["judge"]) == {"human:alice", "human:bob"}
    assert set(df["parse_status"]) == {"human"}
    alice = df[df["judge"] == "human:alice"].set_index("metric")
    assert alice.loc["Active Listening", "score"] == 8.0
    assert alice.loc["Boundaries & Ethical", "score"] != alice.loc["Boundaries & Ethical", "score"]  # NaN
    assert alice.loc["Boundaries & Ethical", "error"] == "not rated"
    assert alice["overall"].iloc[0] == 8.0 and alice["explanation"].iloc[0] == "good"
    assert set(df["base_model"]) == {"zephyr-7b-alpha"} and set(df["data_config"]) == {"synthetic"}
    bob = df[df["judge"] == "human:bob"]
    assert bob["overall"].isna().all() and bob["explanation"].isna().all()


@pytest.mark.parametrize(
    ("header_change", "row_change", "message", "line"),
    [
        (lambda h: h + ["Kindness"], lambda r: r + ["5"], "unknown column", 1),
        (lambda h: [c for c in h if c != "model"], lambda r: r[:2] + r[3:], "missing column", 1),
        (lambda h: [c for c in h if c != METRICS[2]], lambda r: r[:5] + r[6:], "no column for metric", 1),
        (lambda h: h, lambda r: r[:3] + ["11"] + r[4:], "outside 1-10", 3),
        (lambda h: h, lambda r: r[:3] + ["good"] + r[4:], "is not a number", 3),
        (lambda h: h, lambda r: ["", *r[1:]], "'rater' is empty", 3),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, header_change, row_change, message, line) -> None:
    header = ["rater", "question_id", "model", *METRICS]
    row = ["alice", "3", "m", "8", "7", "9", "8", "7", "6", "8"]
    second = [row[0], "4", *row[2:]]
    first = row if line == 3 else row_change(row)
    path = _write(tmp_path / "bad.csv", header_change(header), [first, row_change(second)])
    with pytest.raises(HumanRatingsError) as err:
        read_human_ratings(path)
    assert str(err.value).startswith(f"{path}:{line}: ") and message in str(err.value)


def test_repeated_rating_is_an_error(tmp_path: Path) -> None:
    header = ["rater", "question_id", "model", *METRICS]
    row = ["alice", "3", "m", "8", "7", "9", "8", "7", "6", "8"]
    path = _write(tmp_path / "dup.csv", header, [row, row])
    with pytest.raises(HumanRatingsError, match=r"dup\.csv:3: .*again \(first on line 2\)"):
        read_human_ratings(path)
