"""The answer stage resumes after a crash and runs several base models' engines at once where they fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mentalchat.generate.config import GenerateConfig
from mentalchat.generate.journal import AnswerJournal
from mentalchat.generate.run import run_generate
from mentalchat.schemas import read_table

TEXTS = ["I can't sleep before exams.", "My friend stopped talking to me.", "I feel flat most days.",
         "My mother is ill and I am scared.", "I argue with my partner about money.", "Work makes me anxious."]


def _questions(path: Path, texts: list[str] = TEXTS) -> Path:
    path.write_text("".join(json.dumps({"question_id": i + 1, "turns": [t]}) + "\n" for i, t in enumerate(texts)))
    return path


def _cfg(bases: dict[str, Path], **extra: Any) -> GenerateConfig:
    doc: dict[str, Any] = {
        "engine": {"backend": "transformers", "model": "replaced", "sampling": {"temperature": 0.0, "max_tokens": 6},
                   "transformers": {"batch_size": 2}},
        "base_models": [{"path": str(p), "name": name} for name, p in bases.items()],
        "executor": "local", "fastchat_export": False,
    }
    doc.update(extra)
    return GenerateConfig.model_validate(doc)


def _broken_copy(model: Path, dest: Path) -> Path:
    """The model with its weights cut short: the tokenizer loads, the engine does not."""
    shutil.copytree(model, dest)
    for weights in dest.glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])
    return dest


def _answers(folder: Path) -> dict[tuple[str, str], str]:
    df = read_table(folder / "answers.parquet", "answers").to_pandas()
    return {(r.model_id, r.question_id): r.answer for r in df.itertuples()}


def test_a_crashed_run_resumes_from_its_journal(tmp_path: Path, tiny_model: Path) -> None:
    """Model b's weights are broken: the job dies after model a answered; the rerun asks only b."""
    q = _questions(tmp_path / "q.jsonl")
    broken = _broken_copy(tiny_model, tmp_path / "b")
    cfg = _cfg({"a": tiny_model, "b": broken})
    out = tmp_path / "answers"
    with pytest.raises(Exception):  # noqa: B017 - whatever transformers raises for the broken folder
        run_generate(cfg, q, out)
    assert not out.exists()  # nothing half-published
    journals = list((tmp_path / ".answers.work" / "journal").glob("*.jsonl"))
    assert len(journals) == 1 and len(journals[0].read_text().splitlines()) == len(TEXTS)

    shutil.rmtree(broken)
    shutil.copytree(tiny_model, broken)  # the "fixed" model b
    summary = run_generate(cfg, q, out)
    assert summary.resumed == len(TEXTS)  # a's answers came from the journal
    assert summary.answers == 2 * len(TEXTS) and summary.failed == 0
    resumed = _answers(out)

    # The resumed output equals an uninterrupted run's.
    fresh = tmp_path / "fresh"
    again = run_generate(cfg, q, fresh)
    assert again.resumed == 0
    assert _answers(fresh) == resumed
    assert read_table(fresh / "answers.parquet", "answers").to_pandas()[["model_id", "question_id"]].equals(
        read_table(out / "answers.parquet", "answers").to_pandas()[["model_id", "question_id"]])
    assert not (tmp_path / ".answers.work").exists()  # the journal goes once the output is published


def test_journal_reuses_only_matching_answers(tmp_path: Path, tiny_model: Path) -> None:
    """A changed question text or changed sampling asks again; resume=false ignores the journal."""
    q = _questions(tmp_path / "q.jsonl")
    broken = _broken_copy(tiny_model, tmp_path / "b")

    def crash(out: Path) -> Path:
        """A run that dies after model a answered, leaving a's answers in the journal."""
        with pytest.raises(Exception):  # noqa: B017 - whatever transformers raises for the broken weights
            run_generate(_cfg({"a": tiny_model, "b": broken}), q, out)
        (journal,) = (out.parent / f".{out.name}.work" / "journal").glob("*.jsonl")
        return journal

    first = tmp_path / "first"
    run_generate(_cfg({"a": tiny_model}), q, first)  # uninterrupted: the reference answers
    assert not (tmp_path / ".first.work").exists()

    out = tmp_path / "answers"
    journal = crash(out)
    with journal.open("ab") as f:
        f.write(b'{"rid": "a\\u001f9", "row": {"trunc')  # the line a kill cut short
    changed = _questions(tmp_path / "q2.jsonl", TEXTS[:3] + ["Changed question text."] + TEXTS[4:])
    summary = run_generate(_cfg({"a": tiny_model}), changed, out)
    assert summary.resumed == len(TEXTS) - 1  # question 4's text changed: asked again
    assert summary.answers == len(TEXTS) and summary.failed == 0
    same = {k: v for k, v in _answers(out).items() if k[1] != "4"}
    assert same == {k: v for k, v in _answers(first).items() if k[1] != "4"}

    crash(tmp_path / "third")
    other = _cfg({"a": tiny_model}, sampling={"temperature": 0.0, "max_tokens": 5})
    assert run_generate(other, q, tmp_path / "third").resumed == 0  # other sampling: nothing reused

    crash(tmp_path / "fourth")
    assert run_generate(_cfg({"a": tiny_model}, resume=False), q, tmp_path / "fourth").resumed == 0


def test_partial_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path: Path) -> None:
    j = AnswerJournal(tmp_path, "base", {"k": 1})
    j.append([{"rid": "m\x1f1", "row": {"a": 1}}])
    with j.path.open("ab") as f:
        f.write(b'{"rid": "m\\u001f2", "ro')
    j2 = AnswerJournal(tmp_path, "base", {"k": 1})
    assert set(j2.done()) == {"m\x1f1"}
    j2.append([{"rid": "m\x1f3", "row": {"a": 3}}])
    assert set(AnswerJournal(tmp_path, "base", {"k": 1}).done()) == {"m\x1f1", "m\x1f3"}
    assert AnswerJournal(tmp_path, "base", {"k": 2}).done() == {}  # another fingerprint, another file


@pytest.mark.slow
def test_base_models_answer_at_once_when_they_fit(tmp_path: Path, ray_cluster, tiny_model: Path) -> None:
    """Two base models' engines run at the same time on the cluster; with room for one they take turns."""
    q = _questions(tmp_path / "q.jsonl", TEXTS[:2])
    second = tmp_path / "second"
    shutil.copytree(tiny_model, second)
    ray_cfg: dict[str, Any] = {"executor": "ray"}

    def run(cpus: float, name: str) -> Any:
        engine = {"backend": "transformers", "model": "replaced", "sampling": {"temperature": 0.0, "max_tokens": 4},
                  "vllm": {"cpus_per_replica": cpus}}
        return run_generate(_cfg({"a": tiny_model, "b": second}, engine=engine, **ray_cfg), q, tmp_path / name,
                            use_ray=True)

    both = run(1.0, "both")
    assert both.engines_at_once == 2 and both.answers == 4
    (a, b) = both.engine_times
    assert max(a["started"], b["started"]) < min(a["finished"], b["finished"])  # the two overlapped
    total = sum(n["Resources"].get("CPU", 0) for n in ray_cluster.nodes() if n["Alive"])
    turns = run(total * 0.6, "turns")  # each engine needs over half the cluster
    assert turns.engines_at_once == 1 and turns.answers == 4
    (a, b) = turns.engine_times
    assert a["finished"] <= b["started"]
    assert _answers(tmp_path / "both") == _answers(tmp_path / "turns")
