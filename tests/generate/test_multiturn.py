"""Multi-turn questions answered turn by turn, with the model's own earlier answers in context.

Turn k of every question is one round (one batch), turn k+1 the next; a failed turn ends its
conversation; a rerun resumes per turn; single-turn rows are what they were (turn null).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from mentalchat.core.prompt_format import PromptFormatter
from mentalchat.core.questions import bundled_multiturn_questions, load_questions
from mentalchat.engine.transformers_backend import TransformersEngine
from mentalchat.engine.types import ChatRequest, ChatResult
from mentalchat.generate import prompts as prompts_module
from mentalchat.generate.config import GenerateConfig
from mentalchat.generate.prompts import PromptFormatError, prepare_prompts
from mentalchat.generate.run import run_generate
from mentalchat.schemas import get_table, read_table, write_table

INSTRUCTION = "You are a kind counsellor."


def _questions(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _cfg(bases: dict[str, Path | str], **extra: Any) -> GenerateConfig:
    doc: dict[str, Any] = {
        "engine": {"backend": "transformers", "model": "replaced", "sampling": {"temperature": 0.0, "max_tokens": 12},
                   "transformers": {"batch_size": 16}},
        "base_models": [{"path": str(p), "name": name} for name, p in bases.items()],
        "executor": "local", "fastchat_export": True, "instruction": INSTRUCTION,
    }
    doc.update(extra)
    return GenerateConfig.model_validate(doc)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Every batch the transformers engine is given, and every engine built."""
    seen: dict[str, list[Any]] = {"batches": [], "engines": []}
    batch, init = TransformersEngine.chat_batch, TransformersEngine.__init__

    def spy_batch(self: TransformersEngine, requests: list[ChatRequest]) -> list[ChatResult]:
        seen["batches"].append(list(requests))
        return batch(self, requests)

    def spy_init(self: TransformersEngine, *a: Any, **kw: Any) -> None:
        seen["engines"].append(self)
        init(self, *a, **kw)

    monkeypatch.setattr(TransformersEngine, "chat_batch", spy_batch)
    monkeypatch.setattr(TransformersEngine, "__init__", spy_init)
    return seen


def _rows(folder: Path) -> list[dict[str, Any]]:
    return read_table(folder / "answers.parquet", "answers").to_pylist()


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------
def test_conversation_is_the_trainers_conversation(tiny_model: Path, tmp_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model)
    formatter = PromptFormatter(tok)
    prompts = prepare_prompts(str(tiny_model), "auto", INSTRUCTION, tmp_path, multi_turn=True)
    assert prompts.conversation(["Hi"], []) == prompts.messages("Hi")
    msgs = prompts.conversation(["u1", "u2", "u3"], ["a1", "a2"])
    convo = [{"role": r, "content": c} for r, c in
             [("user", "u1"), ("assistant", "a1"), ("user", "u2"), ("assistant", "a2"), ("user", "u3")]]
    assert [m.model_dump() for m in msgs] == formatter.conversation_messages(
        INSTRUCTION, [*convo, {"role": "assistant", "content": "x"}])[:-1]
    with pytest.raises(ValueError, match="2 client turns need 1 earlier answers, got 0"):
        prompts.conversation(["u1", "u2"], [])


def test_instruction_format_second_turn_is_checked_against_training(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instruction template's earlier turns render as the trainer encodes them; a different
    separator after an answer is refused before anything is asked."""
    prompts = prepare_prompts(str(tiny_model), "instruction", INSTRUCTION, tmp_path / "ok", multi_turn=True)
    copy = AutoTokenizer.from_pretrained(prompts.tokenizer_dir)
    text = copy.apply_chat_template([m.model_dump() for m in prompts.conversation(["u1", "u2"], ["a1"])],
                                    tokenize=False, add_generation_prompt=True)
    assert text.endswith(f"### Client\nu1\n\n### Counsellor\na1{copy.eos_token}\n\n### Client\nu2\n\n### Counsellor\n")
    monkeypatch.setattr(prompts_module, "INSTRUCTION_TURN_SEPARATOR", "\n")
    prepare_prompts(str(tiny_model), "instruction", INSTRUCTION, tmp_path / "single")  # single-turn: not checked
    with pytest.raises(PromptFormatError, match="second turn differs from the training conversation"):
        prepare_prompts(str(tiny_model), "instruction", INSTRUCTION, tmp_path / "bad", multi_turn=True)


# ---------------------------------------------------------------------------------------------
# The real tiny model: turn 2 is asked with the model's own turn-1 answer
# ---------------------------------------------------------------------------------------------
def test_smollm_answers_turn_by_turn_with_its_own_answers(tmp_path: Path, calls: dict[str, list[Any]]) -> None:
    from mentalchat.models.kit import resolve_model

    smollm = resolve_model("local:smollm2-135m-instruct")
    two_turn = load_questions(bundled_multiturn_questions())[:2]
    q = _questions(tmp_path / "q.jsonl", [
        {"question_id": "s1", "category": "sleep", "turns": ["I can't sleep before exams."]},
        *({"question_id": x.question_id, "category": x.category, "turns": list(x.turns)} for x in two_turn),
    ])
    out = tmp_path / "answers"
    summary = run_generate(_cfg({"smol": smollm}), q, out)
    assert summary.failed == 0 and summary.answers == 5 and summary.multi_turn == 2

    rows = _rows(out)
    assert [(r["question_id"], r["turn"]) for r in rows] == [("s1", None), ("mt1", 1), ("mt1", 2), ("mt2", 1), ("mt2", 2)]
    assert all(r["answer"] and r["model_id"] == "smol" for r in rows)
    # one engine, two rounds: every question's first turn in one batch, then the second turns
    assert len(calls["engines"]) == 1
    first, second = calls["batches"]
    assert [r.id.split("\x1f")[1:] for r in first] == [["s1"], ["mt1", "1"], ["mt2", "1"]]
    assert [r.id.split("\x1f")[1:] for r in second] == [["mt1", "2"], ["mt2", "2"]]

    tok = AutoTokenizer.from_pretrained(smollm)
    answer = {(r["question_id"], r["turn"]): r["answer"] for r in rows}
    for req, x in zip(second, two_turn, strict=True):
        prompt = tok.apply_chat_template([m.model_dump() for m in req.messages], tokenize=False,
                                         add_generation_prompt=True)
        own = answer[(x.question_id, 1)]
        assert own in prompt  # the model's own turn-1 answer, verbatim
        expected = (f"<|im_start|>system\n{INSTRUCTION}<|im_end|>\n<|im_start|>user\n{x.turns[0]}<|im_end|>\n"
                    f"<|im_start|>assistant\n{own}<|im_end|>\n<|im_start|>user\n{x.turns[1]}<|im_end|>\n"
                    "<|im_start|>assistant\n")
        assert prompt == expected
    # the single-turn question was asked exactly as before: [system, user]
    assert [m.role for m in first[0].messages] == ["system", "user"]

    # FastChat's layout: one record per question, both turns in choices[0].turns
    recs = {r["question_id"]: r for r in map(json.loads, (out / "model_answer" / "smol.jsonl").read_text().splitlines())}
    assert recs["mt1"]["choices"][0]["turns"] == [answer[("mt1", 1)], answer[("mt1", 2)]]
    assert recs["s1"]["choices"][0]["turns"] == [answer[("s1", None)]]


# ---------------------------------------------------------------------------------------------
# Failures, adapters, resume (the tiny random model)
# ---------------------------------------------------------------------------------------------
def test_a_failed_turn_ends_its_conversation_for_base_and_adapter(
        tmp_path: Path, tiny_model: Path, tiny_lora: Path, calls: dict[str, list[Any]]) -> None:
    """Turn 2 of 'long' is over the model's context: turn 3 is not asked, and both count as failures."""
    row = dict(trial_id="t", model_id="tiny-ft", experiment="ft", base_model="tiny", base_model_path=str(tiny_model),
               data_config="multiturn", overrides="{}", hyperparameters="{}", prompt_format="chat_template",
               prompt_format_setting="auto", steps=1, max_steps=1, adapter_path=str(tiny_lora), wall_time_s=1.0,
               tokens_trained=1, n_train=1, n_eval=1, num_workers=1, config_hash="x")
    (tmp_path / "ft").mkdir()
    write_table(get_table("manifest").from_rows([row]), tmp_path / "ft" / "manifest.parquet", "manifest")
    q = _questions(tmp_path / "q.jsonl", [
        {"question_id": 1, "turns": ["I feel flat."]},
        {"question_id": "ok", "turns": ["I argue with my sister.", "She said sorry today.", "What now?"]},
        {"question_id": "long", "turns": ["My boss shouts.", "too long " * 600, "Still there?"]},
    ])
    out = tmp_path / "answers"
    summary = run_generate(_cfg({}), q, out, adapters=tmp_path / "ft")  # the base comes with the adapter
    rows = _rows(out)
    for model in ("tiny", "tiny-ft"):
        got = [(r["question_id"], r["turn"]) for r in rows if r["model_id"] == model]
        assert got == [("1", None), ("ok", 1), ("ok", 2), ("ok", 3), ("long", 1)]
    fails = {(f["model_id"], f["question_id"], f.get("turn")): f["error"] for f in summary.failures}
    assert set(fails) == {(m, "long", t) for m in ("tiny", "tiny-ft") for t in ("2", "3")}
    assert "limit" in fails[("tiny", "long", "2")] and fails[("tiny-ft", "long", "3")] == "not asked: turn 2 failed"
    assert summary.failed == 4 and summary.answers == 10
    # three rounds on one engine, each holding the base model's and the adapter's turn k
    assert len(calls["batches"]) == 3 and len(calls["engines"]) == 1
    assert [len(b) for b in calls["batches"]] == [6, 4, 2]
    assert {r.lora for r in calls["batches"][2]} == {None, str(tiny_lora)}
    base = {(r["question_id"], r["turn"]): r["answer"] for r in rows if r["model_id"] == "tiny"}
    tuned = {(r["question_id"], r["turn"]): r["answer"] for r in rows if r["model_id"] == "tiny-ft"}
    turn3 = {r.lora: r for r in calls["batches"][2]}
    assert turn3[None].messages[-2].content == base[("ok", 2)]  # each model sees its own earlier answers
    assert turn3[str(tiny_lora)].messages[-2].content == tuned[("ok", 2)]
    single = next(r for r in rows if r["question_id"] == "1" and r["model_id"] == "tiny")
    assert single["turn"] is None and single["prompt_format"] == "chat_template"


def _broken_copy(model: Path, dest: Path) -> Path:
    shutil.copytree(model, dest)
    for weights in dest.glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])
    return dest


def test_a_rerun_resumes_per_turn(tmp_path: Path, tiny_model: Path, calls: dict[str, list[Any]]) -> None:
    """Model a's two turns are journaled before model b crashes the run; the rerun asks only b.
    A changed first turn re-asks both turns (turn 2's context changed); a changed second turn only turn 2."""
    records = [{"question_id": "mt", "turns": ["I can't focus at work.", "Is it burnout?"]},
               {"question_id": "s", "turns": ["I feel lonely."]}]
    q = _questions(tmp_path / "q.jsonl", records)
    broken = _broken_copy(tiny_model, tmp_path / "b")
    out = tmp_path / "answers"
    with pytest.raises(Exception):  # noqa: B017 - whatever transformers raises for the broken weights
        run_generate(_cfg({"a": tiny_model, "b": broken}), q, out)
    (journal,) = (tmp_path / ".answers.work" / "journal").glob("*.jsonl")
    assert len(journal.read_text().splitlines()) == 3  # a: s, mt turn 1, mt turn 2

    shutil.rmtree(broken)
    shutil.copytree(tiny_model, broken)
    calls["batches"].clear()
    summary = run_generate(_cfg({"a": tiny_model, "b": broken}), q, out)
    assert summary.resumed == 3 and summary.answers == 6 and summary.failed == 0
    asked = [r.id for batch in calls["batches"] for r in batch]
    assert sorted(asked) == sorted(["b\x1fs", "b\x1fmt\x1f1", "b\x1fmt\x1f2"])
    reference = {(r["model_id"], r["question_id"], r["turn"]): r["answer"] for r in _rows(out)}

    def crashed_then_rerun(name: str, changed: list[dict[str, Any]]) -> list[str]:
        broken_b = _broken_copy(tiny_model, tmp_path / f"b-{name}")
        target = tmp_path / name
        with pytest.raises(Exception):  # noqa: B017
            run_generate(_cfg({"a": tiny_model, "b": broken_b}), q, target)
        calls["batches"].clear()
        run_generate(_cfg({"a": tiny_model}), _questions(tmp_path / f"{name}.jsonl", changed), target)
        return sorted(r.id for batch in calls["batches"] for r in batch)

    new_first = [{"question_id": "mt", "turns": ["I can't focus at home.", "Is it burnout?"]}, records[1]]
    assert crashed_then_rerun("first", new_first) == ["a\x1fmt\x1f1", "a\x1fmt\x1f2"]
    new_second = [{"question_id": "mt", "turns": ["I can't focus at work.", "Could it be stress?"]}, records[1]]
    assert crashed_then_rerun("second", new_second) == ["a\x1fmt\x1f2"]
    assert {k: v for k, v in _rows_by_key(tmp_path / "second").items() if k[2] != 2} == {
        k: v for k, v in reference.items() if k[0] == "a" and k[2] != 2}


def _rows_by_key(folder: Path) -> dict[tuple[str, str, int | None], str]:
    return {(r["model_id"], r["question_id"], r["turn"]): r["answer"] for r in _rows(folder)}
