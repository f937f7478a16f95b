"""FastChat question / model_answer / model_judgment files: both directions, errors, real files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from mentalchat.core.fastchat import (
    FastChatFormatError,
    format_judgment_text,
    read_fastchat_dir,
    read_model_answers,
    read_model_judgments,
    read_questions,
    write_model_answers,
    write_model_judgments,
    write_questions,
)
from mentalchat.core.judge_reply import parse_judgment
from mentalchat.core.model_names import paper_model_map
from mentalchat.core.rubric import METRICS
from mentalchat.schemas import ANSWERS, JUDGMENTS


def _jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _judgment_text(scores: list[int], overall: int) -> str:
    body = "\n".join(f"{i}. **{m}:** [[{s}]]" for i, (m, s) in enumerate(zip(METRICS, scores, strict=True), 1))
    # FastChat's first [[n]] would be Active Listening here, not the overall rating
    return f"Explanation: kind reply.\n\n{body}\n\nRating: [[{overall}]]"


@pytest.fixture
def fastchat_dir(tmp_path: Path) -> Path:
    root = tmp_path / "fc"
    _jsonl(root / "question.jsonl", [{"question_id": q, "category": "generic", "turns": [f"question {q}?"]}
                                     for q in (1, 2)])
    for model, hub in (("zephyr-7b-alpha", "HuggingFaceH4/zephyr-7b-alpha"),
                       ("zephyr-7b-gpt-1025", "ShenLab/zephyr-7b-gpt-1025")):
        _jsonl(root / "model_answer" / f"{model}.jsonl", [
            {"question_id": q, "answer_id": f"a{q}", "model_id": hub,
             "choices": [{"index": 0, "turns": [f"answer of {model} to {q}"]}], "tstamp": 1.0}
            for q in (1, 2)])
    recs = []
    for model, scores in (("zephyr-7b-alpha", [6, 6, 7, 8, 6, 5, 6]), ("zephyr-7b-gpt-1025", [8, 9, 8, 9, 8, 7, 8])):
        for q in (1, 2):
            recs.append({"question_id": q, "model": model, "judge": ["gpt-4-1106-preview", "single-mental-v1"],
                         "user_prompt": "...", "judgment": _judgment_text(scores, 7), "score": scores[0],
                         "turn": 1, "tstamp": 1.0})
    recs.append({"question_id": 3, "model": "zephyr-7b-alpha", "judge": ["gpt-4-1106-preview", "single-mental-v1"],
                 "user_prompt": "", "judgment": "$ERROR$", "score": -1, "turn": 1, "tstamp": 1.0})
    _jsonl(root / "model_judgment_openai" / "gpt-4-1106-preview_single.jsonl", recs)
    return root


def test_questions_round_trip(fastchat_dir: Path, tmp_path: Path) -> None:
    qs = read_questions(fastchat_dir / "question.jsonl")
    assert [q["question_id"] for q in qs] == ["1", "2"] and qs[0]["question"] == "question 1?"
    out = write_questions(qs, tmp_path / "q.jsonl")
    assert json.loads(out.read_text().splitlines()[0])["question_id"] == 1  # ints stay ints
    assert read_questions(out) == qs


def test_answers_round_trip_uses_file_stem_and_mapping(fastchat_dir: Path, tmp_path: Path) -> None:
    answers = read_model_answers(fastchat_dir / "model_answer", paper_model_map())
    df = answers.to_pandas()
    assert set(df["model_id"]) == {"zephyr-7b-alpha", "zephyr-7b-gpt-1025"}
    syn = df[df["model_id"] == "zephyr-7b-gpt-1025"].iloc[0]
    assert (syn["base_model"], syn["data_config"]) == ("zephyr-7b-alpha", "synthetic")
    assert json.loads(syn["params"])["fastchat_model_id"] == "ShenLab/zephyr-7b-gpt-1025"
    files = write_model_answers(answers, tmp_path / "model_answer")
    assert sorted(p.name for p in files) == ["zephyr-7b-alpha.jsonl", "zephyr-7b-gpt-1025.jsonl"]
    again = read_model_answers(tmp_path / "model_answer", paper_model_map())
    cols = ["question_id", "model_id", "base_model", "data_config", "answer"]
    assert again.select(cols).sort_by("model_id").equals(answers.select(cols).sort_by("model_id"))


def test_judgments_parse_each_metric_not_fastchat_score(fastchat_dir: Path) -> None:
    table = read_model_judgments(fastchat_dir / "model_judgment_openai", paper_model_map())
    df = table.to_pandas()
    assert len(df) == 5 * 7
    tuned = df[(df["model"] == "zephyr-7b-gpt-1025") & (df["question_id"] == "1")].set_index("metric")
    assert tuned.loc["Empathy & Validation", "score"] == 9.0
    assert (tuned["overall"] == 7.0).all()  # FastChat's score field said 8 (the first [[n]])
    assert tuned["data_config"].iloc[0] == "synthetic"
    assert tuned["prompt_version"].iloc[0] == "single-mental-v1"
    failed = df[df["question_id"] == "3"]
    assert (failed["parse_status"] == "failed").all() and failed["score"].isna().all()
    assert failed["error"].str.contains("ERROR").all()


def test_judgments_round_trip_and_fastchat_score_is_overall(fastchat_dir: Path, tmp_path: Path) -> None:
    table = read_model_judgments(fastchat_dir / "model_judgment_openai", paper_model_map())
    files = write_model_judgments(table, tmp_path / "model_judgment")
    assert [p.name for p in files] == ["gpt-4-1106-preview_single.jsonl"]
    recs = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert {r["score"] for r in recs if r["judgment"] != "$ERROR$"} == {7}
    assert {r["score"] for r in recs if r["judgment"] == "$ERROR$"} == {-1}
    again = read_model_judgments(files, paper_model_map())
    cols = ["question_id", "model", "judge", "metric", "score", "overall", "parse_status"]
    key = [("model", "ascending"), ("question_id", "ascending"), ("metric", "ascending")]
    assert again.select(cols).sort_by(key).equals(table.select(cols).sort_by(key))


def test_scores_without_text_are_exported_fastchat_style(tmp_path: Path) -> None:
    rows = [{"question_id": "7", "model": "m", "judge": "human:ann", "metric": m, "score": float(s),
             "overall": 6.0, "parse_status": "human"} for m, s in zip(METRICS, [5, 6, 7, 8, 9, 4, 3], strict=True)]
    files = write_model_judgments(JUDGMENTS.from_rows(rows), tmp_path)
    assert files[0].name == "human-ann_single.jsonl"
    rec = json.loads(files[0].read_text())
    assert rec["judge"][0] == "human:ann" and rec["score"] == 6
    assert rec["judgment"].index("Rating: [[6]]") < rec["judgment"].index("[[5]]")  # FastChat reads overall
    parsed = parse_judgment(rec["judgment"])
    assert [parsed.scores[m] for m in METRICS] == [5, 6, 7, 8, 9, 4, 3] and parsed.overall == 6
    assert parse_judgment(format_judgment_text({}, None, None)).status == "unparsed"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("{not json", "invalid JSON"),
        ({"question_id": 1, "model": "m", "judge": ["j", "p"]}, "missing field(s) ['judgment']"),
        ({"question_id": 1, "model": "m", "judge": ["j", "p"], "judgment": "x", "turn": 0}, "positive integer"),
        ({"question_id": 1.5, "model": "m", "judge": ["j", "p"], "judgment": "x"}, "question_id"),
        ({"question_id": 1, "model_1": "a", "model_2": "b", "judge": ["j", "p"], "judgment": "x"}, "pairwise"),
    ],
)
def test_bad_judgment_lines_name_file_and_line(tmp_path: Path, record, message: str) -> None:
    good = {"question_id": 1, "model": "m", "judge": ["j", "p"], "judgment": "Active Listening: [[5]]"}
    path = _jsonl(tmp_path / "j.jsonl", [good, "", record])
    with pytest.raises(FastChatFormatError) as err:
        read_model_judgments(path)
    assert str(err.value).startswith(f"{path}:3: ") and message in str(err.value)


def test_bad_answer_and_question_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "model_answer" / "m.jsonl", [
        {"question_id": 1, "choices": [{"index": 0, "turns": ["a"]}]},
        {"question_id": 2, "choices": [{"index": 0, "turns": ["a", "b"]}]},
    ])
    one_turn = [{"question_id": "1", "turns": ["x"]}, {"question_id": "2", "turns": ["y"]}]
    with pytest.raises(FastChatFormatError, match=r"m\.jsonl:2: 2 answer turns for question 2, which has 1"):
        read_model_answers(path, questions=one_turn)
    dup = _jsonl(tmp_path / "q.jsonl", [{"question_id": 1, "turns": ["x"]}, {"question_id": 1, "turns": ["y"]}])
    with pytest.raises(FastChatFormatError, match=r"q\.jsonl:2: question_id 1 repeats line 1"):
        read_questions(dup)
    twice = {"question_id": 1, "model": "m", "judge": ["j", "p"], "judgment": "x"}
    jpath = _jsonl(tmp_path / "jj.jsonl", [twice, twice])
    with pytest.raises(FastChatFormatError, match=r"jj\.jsonl:2: second judgment"):
        read_model_judgments(jpath)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FastChatFormatError, match="holds none of"):
        read_fastchat_dir(tmp_path / "empty")


def _with_repeats(fastchat_dir: Path) -> Path:
    """Append a rerun's judgments to the folder: question 1 of both models again (other scores), in a
    second file, and question 2 of one model repeated inside the first file."""
    jdir = fastchat_dir / "model_judgment_openai"
    judge = ["gpt-4-1106-preview", "single-mental-v1"]
    again = [{"question_id": 1, "model": m, "judge": judge, "judgment": _judgment_text([2] * 7, 2), "turn": 1}
             for m in ("zephyr-7b-alpha", "zephyr-7b-gpt-1025")]
    _jsonl(jdir / "gpt-4-1106-preview_single_rerun.jsonl", again)
    first = jdir / "gpt-4-1106-preview_single.jsonl"
    first.write_text(first.read_text() + json.dumps({"question_id": 2, "model": "zephyr-7b-alpha", "judge": judge,
                                                     "judgment": _judgment_text([3] * 7, 3), "turn": 1}) + "\n")
    return fastchat_dir


def test_repeated_judgments_are_listed_or_resolved(fastchat_dir: Path) -> None:
    root = _with_repeats(fastchat_dir)
    jdir = root / "model_judgment_openai"
    with pytest.raises(FastChatFormatError) as err:
        read_model_judgments(jdir)
    msg = str(err.value)
    assert msg.startswith(f"{jdir / 'gpt-4-1106-preview_single.jsonl'}:6: second judgment of question 2 for model "
                          "'zephyr-7b-alpha'")
    assert "3 repeated judgment(s) in all" in msg and "--on-duplicate" in msg
    assert f"{jdir / 'gpt-4-1106-preview_single_rerun.jsonl'}:2: question 1, model 'zephyr-7b-gpt-1025'" in msg
    assert err.value.line == 6 and err.value.path.endswith("gpt-4-1106-preview_single.jsonl")

    def overall(table: pa.Table, model: str, qid: str) -> list[float]:
        df = table.to_pandas()
        return sorted(set(df[(df.model == model) & (df.question_id == qid)]["overall"]))

    dropped: list = []
    first = read_model_judgments(jdir, on_duplicate="first", duplicates=dropped)
    assert first.num_rows == 35 and len(dropped) == 3  # 5 judgments x 7 metrics, as without the rerun
    assert overall(first, "zephyr-7b-alpha", "1") == [7] and overall(first, "zephyr-7b-alpha", "2") == [7]
    last = read_model_judgments(jdir, on_duplicate="last")
    assert last.num_rows == 35
    assert overall(last, "zephyr-7b-alpha", "1") == [2] and overall(last, "zephyr-7b-alpha", "2") == [3]
    data = read_fastchat_dir(root, on_duplicate="last")
    assert len(data.duplicates) == 3 and data.judgments.num_rows == 35
    with pytest.raises(FastChatFormatError, match="on_duplicate 'newest'"):
        read_model_judgments(jdir, on_duplicate="newest")


def test_read_fastchat_dir(fastchat_dir: Path) -> None:
    data = read_fastchat_dir(fastchat_dir, paper_model_map())
    assert len(data.questions) == 2
    assert data.answers.num_rows == 4 and data.judgments.num_rows == 35
    assert data.judgments.column("raw_text").null_count == 35  # keep_text=False by default
    assert isinstance(data.answers, pa.Table)
    assert data.answers.schema.equals(ANSWERS.schema.with_metadata(ANSWERS.metadata))


@pytest.mark.shared
@pytest.mark.parametrize("policy", ["error", "first", "last"])
def test_the_authors_judgment_folders_under_each_duplicate_policy(shared_data: Path, policy: str) -> None:
    """This copy of the authors' folders holds no repeated (question, model, judge): every policy reads
    all 2 x 31 x 200 judgments and drops none (a copy that does repeat fails ``error`` and is counted here)."""
    dropped: list = []
    dirs = sorted((shared_data / "fastchat").glob("model_judgment*"))
    table = read_model_judgments(dirs, keep_text=False, on_duplicate=policy, duplicates=dropped)
    assert table.num_rows + 7 * len(dropped) >= 2 * 31 * 200 * 7
    assert table.num_rows == 2 * 31 * 200 * 7 and dropped == []


@pytest.mark.shared
def test_reads_the_authors_folder(shared_data: Path) -> None:
    data = read_fastchat_dir(shared_data / "fastchat", paper_model_map())
    assert data.answers.num_rows == 31 * 200
    assert data.judgments.num_rows == 2 * 31 * 200 * 7
    df = data.judgments.select(["model", "judge", "data_config", "score"]).to_pandas()
    assert df["data_config"].notna().all()  # the default mapping covers all 31 models
    assert set(df["judge"]) == {"gpt-4-1106-preview", "gemini-pro"}
    assert df["score"].notna().mean() > 0.99
    qs = read_questions(shared_data / "eval" / "question.jsonl")
    assert len(qs) == 200


def test_import_cli_on_duplicate(fastchat_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mentalchat.cli import main
    from mentalchat.schemas import read_table

    root = _with_repeats(fastchat_dir)
    assert main(["fastchat", "import", "--fastchat", str(root), "--output", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "second judgment of question 2" in err and "3 repeated judgment(s)" in err
    assert not (tmp_path / "a").exists()
    assert main(["fastchat", "import", "--fastchat", str(root), "--output", str(tmp_path / "b"),
                 "--on-duplicate", "last"]) == 0
    assert "dropped 3 repeated judgments of the same (question, model, judge), kept the last" in capsys.readouterr().err
    assert read_table(tmp_path / "b" / "judgments.parquet", "judgments").num_rows == 35


def test_convert_cli_both_ways(fastchat_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from mentalchat.schemas import read_table

    script = Path(__file__).resolve().parents[2] / "jobs" / "fastchat.py"
    imp = subprocess.run([sys.executable, str(script), "import", "--fastchat", str(fastchat_dir),
                          "--output", str(tmp_path / "imp")], capture_output=True, text=True, timeout=300)
    assert imp.returncode == 0, imp.stderr
    judgments = read_table(tmp_path / "imp" / "judgments.parquet", "judgments")
    assert judgments.num_rows == 35 and judgments.column("raw_text").null_count == 0
    assert (tmp_path / "imp" / "question.jsonl").is_file()
    exp = subprocess.run([sys.executable, str(script), "export", "--answers", str(tmp_path / "imp" / "answers.parquet"),
                          "--judgments", str(tmp_path / "imp" / "judgments.parquet"),
                          "--output", str(tmp_path / "exp")], capture_output=True, text=True, timeout=300)
    assert exp.returncode == 0, exp.stderr
    back = read_model_judgments(tmp_path / "exp" / "model_judgment")
    cols = ["question_id", "model", "metric", "score", "overall"]
    key = [("model", "ascending"), ("question_id", "ascending"), ("metric", "ascending")]
    assert back.select(cols).sort_by(key).equals(judgments.select(cols).sort_by(key))
    assert len(list((tmp_path / "exp" / "model_answer").glob("*.jsonl"))) == 2
