"""Judged answers as Inspect AI eval logs, read back with Inspect's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.cli import job_main
from mentalchat.core.inspect_logs import write_inspect_logs
from mentalchat.core.rubric import METRIC_TO_KEY, METRICS
from mentalchat.errors import UsageError
from mentalchat.schemas import ANSWERS, JUDGMENTS, write_table

pytest.importorskip("inspect_ai")


def _tables():
    answers = ANSWERS.from_rows(
        [{"question_id": str(q), "model_id": m, "base_model": "b1", "data_config": c, "answer": f"{m} says {q}"}
         for q in (1, 2, 3) for m, c in (("b1", "base"), ("b1-syn", "synthetic"))]
        + [{"question_id": "mt", "model_id": "b1", "answer": "turn one", "turn": 1}])
    rows = []
    for q in (1, 2, 3):
        for m in ("b1", "b1-syn"):
            for judge, offset in (("gpt-judge", 0), ("human:ana", 1)):
                if judge == "human:ana" and q == 3:
                    continue  # the rater skipped question 3
                for i, metric in enumerate(METRICS):
                    rows.append({"question_id": str(q), "model": m, "judge": judge, "metric": metric,
                                 "score": float(1 + (q + i + offset) % 10), "overall": float(5 + offset),
                                 "explanation": f"{judge} on {q}", "parse_status": "ok"})
    return answers, JUDGMENTS.from_rows(rows)


def test_logs_read_back_with_inspect(tmp_path: Path) -> None:
    from inspect_ai.log import list_eval_logs, read_eval_log

    answers, judgments = _tables()
    questions = {str(q): f"message {q}" for q in (1, 2, 3)} | {"mt": "first"}
    paths = write_inspect_logs(answers, judgments, questions, tmp_path / "logs")
    assert len(paths) == 2 and len(list_eval_logs(str(tmp_path / "logs"))) == 2
    log = read_eval_log(str(next(p for p in paths if p.name.endswith("_b1-syn.eval"))))
    assert log.status == "success" and log.eval.model == "mentalchat/b1-syn" and log.eval.task == "mentalchat16k"
    assert [s.id for s in log.samples] == ["1", "2", "3"]  # the multi-turn row is left out
    s2 = log.samples[1]
    assert s2.input == "message 2" and s2.output.completion == "b1-syn says 2"
    assert set(s2.scores) == {"gpt-judge", "human:ana"} and set(log.samples[2].scores) == {"gpt-judge"}
    expected = {METRIC_TO_KEY[m]: float(1 + (2 + i + 1) % 10) for i, m in enumerate(METRICS)} | {"overall": 6.0}
    assert s2.scores["human:ana"].value == expected and s2.scores["human:ana"].explanation == "human:ana on 2"
    assert s2.metadata["data_config"] == "synthetic"
    by_judge = {sc.name: sc for sc in log.results.scores}
    metric = METRIC_TO_KEY[METRICS[0]]
    assert by_judge["gpt-judge"].metrics[f"{metric}_mean"].value == pytest.approx((2 + 3 + 4) / 3)
    assert by_judge["human:ana"].scored_samples == 2


def test_the_command_and_its_errors(tmp_path: Path) -> None:
    answers, judgments = _tables()
    a = write_table(answers, tmp_path / "a.parquet", "answers")
    j = write_table(judgments, tmp_path / "j.parquet", "judgments")
    q = tmp_path / "q.jsonl"
    q.write_text("".join(json.dumps({"question_id": str(i), "turns": [f"message {i}"]}) + "\n" for i in (1, 2)))
    assert job_main("inspect-logs", ["--answers", str(a), "--judgments", str(j), "--questions", str(q),
                                     "--output", str(tmp_path / "out")]) == 2  # question 3 is not in the file
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    q.write_text(q.read_text() + json.dumps({"question_id": "3", "turns": ["message 3"]}) + "\n")
    assert job_main("inspect-logs", ["--answers", str(a), "--judgments", str(j), "--questions", str(q),
                                     "--output", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mentalchat16k_b1-syn.eval", "mentalchat16k_b1.eval"]
    with pytest.raises(UsageError, match="not in the answers table"):
        write_inspect_logs(answers.slice(0, 2), judgments, {"1": "x", "2": "y", "3": "z"}, tmp_path / "x")


@pytest.mark.shared
def test_the_authors_judgments_as_inspect_logs(shared_data: Path, tmp_path: Path) -> None:
    """The paper's answers and GPT-4/Gemini judgments (missing scores, fractional overalls) round-trip."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from inspect_ai.log import read_eval_log

    from mentalchat.core import fastchat
    from mentalchat.core.model_names import paper_model_map
    from mentalchat.core.questions import load_questions

    data = fastchat.read_fastchat_dir(shared_data / "fastchat", paper_model_map())
    keep = ["ChatPsychiatrist", "Samantha-1.11-7b"]
    answers = data.answers.filter(pc.is_in(data.answers["model_id"], value_set=pa.array(keep)))
    judgments = data.judgments.filter(pc.is_in(data.judgments["model"], value_set=pa.array(keep)))
    questions = {q.question_id: q.text for q in load_questions(shared_data / "eval" / "question.jsonl")}
    paths = write_inspect_logs(answers, judgments, questions, tmp_path)
    log = read_eval_log(str(next(p for p in paths if "Samantha" in p.name)))
    assert len(log.samples) == 200 and {s.name for s in log.results.scores} == {"gemini-pro", "gpt-4-1106-preview"}
    df = judgments.to_pandas()
    for sc in log.results.scores:
        for metric in METRICS:
            rows = df[(df.model == "Samantha-1.11-7b") & (df.judge == sc.name) & (df.metric == metric)]
            assert sc.metrics[f"{METRIC_TO_KEY[metric]}_mean"].value == pytest.approx(rows.score.mean())
        overall = df[(df.model == "Samantha-1.11-7b") & (df.judge == sc.name)].groupby("question_id").overall.first()
        assert sc.metrics["overall_mean"].value == pytest.approx(overall.mean())
    sample = next(s for s in log.samples if s.id == "1")
    assert sample.input == questions["1"] and set(sample.scores) == {"gemini-pro", "gpt-4-1106-preview"}
