"""Pairwise judging: which pairs are asked in which orders, the tie rule, position bias, the table, resume.

The end-to-end tests go through the real openai and google-genai clients over HTTP to the fault
server, whose ``pairwise`` rule makes a judge that always picks the first reply (a pure position
bias) or one that decides by content whatever the order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest

from mentalchat.core.questions import load_questions
from mentalchat.engine.types import SamplingConfig
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.items import build_request, item_id
from mentalchat.judge.pairwise import pairwise_outcomes, position_bias_rows
from mentalchat.judge.plan import load_answers, plan_items
from mentalchat.judge.prompts import PAIRWISE_SCHEMA
from mentalchat.judge.run import run_judge
from mentalchat.judge.stage import JudgeStage
from mentalchat.schemas import get_table, read_table, write_table
from mentalchat.testing.fault_server import FaultServer
from mentalchat.testing.fault_server.schema_fill import default_responder

FAST_HTTP = {"max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2.0, "max_concurrency": 4}
TUNED = ("synthetic", "interview", "combined")
#: (model, base_model, data_config): one base with three fine-tuned models, a second base, a baseline
MODELS = [("tiny", "tiny", "base"), *((f"tiny-{c}", "tiny", c) for c in TUNED),
          ("other", "other", "base"), ("samantha", None, "baseline")]


def _inputs(folder: Path, n_questions: int = 4) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    qpath = folder / "question.jsonl"
    qpath.write_text("".join(
        json.dumps({"question_id": i, "category": "generic", "turns": [f"q{i}: I cannot sleep and feel alone."]}) + "\n"
        for i in range(1, n_questions + 1)))
    rows = [{"question_id": str(i), "model_id": m, "base_model": b, "data_config": c,
             "answer": f"answer to q{i} by {m}: that sounds lonely; is there someone you could call tonight?"}
            for i in range(1, n_questions + 1) for m, b, c in MODELS]
    apath = folder / "answers.parquet"
    write_table(get_table("answers").from_rows(rows), apath, "answers")
    return qpath, apath


def _cfg(srv: FaultServer | None = None, judges: tuple[str, ...] = ("oa",), top: dict[str, Any] | None = None,
         **pairwise: Any) -> JudgeConfig:
    """Judges on the fault server; ``pairwise`` keys go to judge.pairwise, ``top`` to the judge section."""
    url = srv.openai_base_url if srv else "http://127.0.0.1:9/v1"
    doc: dict[str, Any] = {
        "judges": [{"engine": j} for j in judges],
        "engines": {
            "oa": {"backend": "openai", "model": "gpt-4o", "base_url": url,
                   "sampling": {"temperature": 0.0, "max_tokens": 300}, "http": FAST_HTTP},
            "oa-json-mode": {"backend": "openai", "model": "gpt-4-1106-preview", "base_url": url,
                             "sampling": {"temperature": 0.0, "max_tokens": 300}, "http": FAST_HTTP},
            "gm": {"backend": "gemini", "model": "gemini-2.0-flash", "base_url": srv.base_url if srv else url,
                   "sampling": {"temperature": 0.0, "max_tokens": 300}, "http": FAST_HTTP},
        },
        "pairwise": {"enabled": True, **pairwise},
        **(top or {}),
    }
    return JudgeConfig.model_validate(doc)


def _plan(tmp_path: Path, cfg: JudgeConfig, n_questions: int = 4):
    qpath, apath = _inputs(tmp_path / "in", n_questions)
    return plan_items(cfg, load_questions(qpath), load_answers([apath]))


def _pairwise_items(plan) -> list:
    return [it for it in plan.items if it.kind == "pairwise"]


# --- planning ------------------------------------------------------------------------------------
def test_plan_base_pairs_both_orders_and_max_questions(tmp_path: Path) -> None:
    plan = _plan(tmp_path, _cfg(max_questions=3))
    items = _pairwise_items(plan)
    # 3 questions x 3 fine-tuned models x 2 orders; "other" has no fine-tuned model, the baseline no base.
    assert len(items) == 18 and len(plan.items) == 4 * len(MODELS) + 18
    assert {it.question_id for it in items} == {"1", "2", "3"}
    pairs = {(it.question_id, it.extra["model_a"], it.extra["model_b"]) for it in items}
    assert {(a, b) for _, a, b in pairs} == {("tiny", f"tiny-{c}") for c in TUNED}
    for it in items:
        assert it.extra["order"] in ("ab", "ba")
        first = it.extra["model_a"] if it.extra["order"] == "ab" else it.extra["model_b"]
        assert it.model == first and it.answer.startswith(f"answer to q{it.question_id} by {first}:")
        assert {it.model, it.model_b} == {it.extra["model_a"], it.extra["model_b"]}
        assert it.base_model == "tiny" and it.data_config == it.extra["model_b"].removeprefix("tiny-")
    orders = pd.Series([(it.question_id, it.extra["model_b"], it.extra["order"]) for it in items])
    assert orders.is_unique and len(items) == 2 * len(pairs)  # each pair once in each order
    # Ids are deterministic, and differ between the two orders of one pair.
    again = _pairwise_items(_plan(tmp_path / "again", _cfg(max_questions=3)))
    assert [it.id for it in again] == [it.id for it in items]
    assert len({it.id for it in plan.items}) == len(plan.items)


def test_plan_all_pairs_one_order_and_every_judge(tmp_path: Path) -> None:
    all_pairs = _pairwise_items(_plan(tmp_path / "all", _cfg(pairs="all", max_questions=1)))
    n_models = len(MODELS)
    assert len(all_pairs) == n_models * (n_models - 1)  # every unordered pair, both orders
    assert all(it.extra["model_a"] < it.extra["model_b"] for it in all_pairs)  # canonical pair: sorted
    one = _pairwise_items(_plan(tmp_path / "one", _cfg(both_orders=False)))
    assert len(one) == 4 * 3 and {it.extra["order"] for it in one} == {"ab", "ba"}  # seeded, not always base first
    assert [it.id for it in one] == [it.id for it in _pairwise_items(_plan(tmp_path / "one2", _cfg(both_orders=False)))]
    two = _pairwise_items(_plan(tmp_path / "two", _cfg(judges=("oa", "gm"), max_questions=2)))
    assert len(two) == 2 * 2 * 3 * 2 and {it.judge for it in two} == {"gpt-4o", "gemini-2.0-flash"}


def test_pairwise_ids_hash_both_answers_in_the_order_shown() -> None:
    base = ("pairwise", "j", "pairwise-v1", "1", "a", "answer a")
    ab = item_id(*base, 0, "b", "answer b")
    assert ab == item_id(*base, 0, "b", "answer b")
    assert ab != item_id(*base, 0, "b", "answer b, edited")  # the second answer is part of the call
    assert ab != item_id("pairwise", "j", "pairwise-v1", "1", "b", "answer b", 0, "a", "answer a")
    assert item_id(*base) == item_id(*base, 0, None, None)  # single-answer ids unchanged


def test_pairwise_requests_structured_and_text(tmp_path: Path) -> None:
    plan = _plan(tmp_path, _cfg(max_questions=1))
    item = next(it for it in _pairwise_items(plan) if it.extra["order"] == "ba")
    req = build_request(item, plan.renderers, SamplingConfig(temperature=0.0, max_tokens=200))
    assert req.json_schema == PAIRWISE_SCHEMA and req.id == item.id
    user = req.messages[-1].content
    a_at, b_at = user.index("<reply_A>"), user.index("<reply_B>")
    assert user.index(item.answer) > a_at and user.index(item.answer_b) > b_at > a_at  # shown first is Reply A
    assert item.model == item.extra["model_b"]  # order ba: the fine-tuned model was shown first
    assert "tie" in user and "order" in user and "longer" in user
    text = build_request(item.__class__(**{**item.to_dict(), "structured": False}), plan.renderers,
                         SamplingConfig(max_tokens=200))
    assert text.json_schema is None and "[[A]]" in text.messages[-1].content and "[[tie]]" in text.messages[-1].content
    capped = build_request(item.__class__(**{**item.to_dict(), "explanation_max_chars": 80}), plan.renderers,
                           SamplingConfig(max_tokens=200))
    assert capped.json_schema["properties"]["reason"]["maxLength"] == 80 and "maxLength" not in PAIRWISE_SCHEMA["properties"]["reason"]


def test_config_defaults_and_unknown_prompt() -> None:
    cfg = JudgeConfig()
    assert not cfg.pairwise.enabled and cfg.pairwise.pairs == "base" and cfg.pairwise.both_orders
    assert 0 < cfg.pairwise.position_bias_flag_rate < 0.5
    with pytest.raises(ValueError, match="pairwise prompt version"):
        JudgeConfig.model_validate({"pairwise": {"prompt_version": "pairwise-v0"}})
    with pytest.raises(ValueError):
        JudgeConfig.model_validate({"pairwise": {"pairs": "some"}})
    assert JudgeStage().outputs_for(_cfg()) == ("judgments.parquet", "pairwise.parquet", "reliability.parquet")
    assert JudgeStage().outputs_for(JudgeConfig()) == ("judgments.parquet",)


# --- combining the two orders ----------------------------------------------------------------------
def _row(q: str, order: str, winner: str | None, position: str | None, judge: str = "j", b: str = "t") -> dict:
    return {"question_id": q, "judge": judge, "prompt_version": "pairwise-v1", "model_a": "base", "model_b": b,
            "base_model": "x", "data_config": "synthetic", "order": order, "verdict_position": position,
            "winner": winner, "reason": None, "raw_text": None, "error": None if winner else "HTTP 500"}


def _table(rows: list[dict]) -> pd.DataFrame:
    return get_table("pairwise").from_rows(rows).to_pandas()


def test_combined_verdict_and_the_tie_rule() -> None:
    df = _table([
        _row("1", "ab", "t", "second"), _row("1", "ba", "t", "first"),       # agree: t wins
        _row("2", "ab", "tie", "tie"), _row("2", "ba", "tie", "tie"),        # both tie
        _row("3", "ab", "base", "first"), _row("3", "ba", "t", "first"),     # flip: counted as a tie
        _row("4", "ab", "t", "second"), _row("4", "ba", "tie", "tie"),       # one order says tie: a tie
        _row("5", "ab", "t", "second"), _row("5", "ba", None, None),         # an order failed: undecided
        _row("6", "ba", "base", "second"),                                   # asked in one order only
    ])
    out = pairwise_outcomes(df).set_index("question_id")
    winners = {q: None if pd.isna(w) else w for q, w in out.winner.items()}
    assert winners == {"1": "t", "2": "tie", "3": "tie", "4": "tie", "5": None, "6": "base"}
    assert out.flipped.tolist()[:4] == [False, False, True, True]
    assert out.flipped.isna().tolist()[4:] == [True, True]
    assert out.n_orders.tolist() == [2, 2, 2, 2, 2, 1] and out.n_read.tolist() == [2, 2, 2, 2, 1, 1]
    assert (out.data_config == "synthetic").all()
    assert pairwise_outcomes(df.iloc[:0]).empty


def test_position_bias_rows() -> None:
    df = _table([
        _row("1", "ab", "base", "first"), _row("1", "ba", "t", "first"),
        _row("2", "ab", "t", "second"), _row("2", "ba", "t", "first"),
        _row("3", "ab", "tie", "tie"), _row("3", "ba", "tie", "tie"),
        _row("4", "ab", "base", "first"), _row("4", "ba", None, None),
    ])
    (row, silent) = position_bias_rows(df, ["j", "k"], "pairwise-v1", flag_rate=0.3)
    assert (row["check"], row["metric"], row["n"], row["n_failed"]) == ("position_bias", "overall", 3, 1)
    assert row["value"] == pytest.approx(1 / 3) and row["flagged"]
    assert row["rate"] == pytest.approx(4 / 5)  # 4 of the 5 decisive verdicts chose the first reply
    detail = json.loads(row["detail"])
    assert detail == {"n_pairs": 3, "n_flips": 1, "first_wins": 4, "second_wins": 1, "ties": 2, "threshold": 0.3}
    # A judge without pairs still gets its row: nothing measured, nothing flagged.
    assert silent["judge"] == "k" and silent["n"] == 0 and silent["value"] is None and not silent["flagged"]
    one_order = position_bias_rows(_table([_row("1", "ab", "t", "second")]), ["j"], "pairwise-v1", flag_rate=0.3)[0]
    assert one_order["value"] is None and not one_order["flagged"] and "not measured" in one_order["detail"]
    get_table("reliability").from_rows([row, silent, one_order])  # schema-valid


# --- the fault server's pairwise rules ----------------------------------------------------------
def _pair_prompt(a: str, b: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Which is better?\n<reply_A>\n{a}\n</reply_A>\n<reply_B>\n{b}\n</reply_B>"}]


def test_fault_server_pairwise_rules() -> None:
    params = {"json_schema": PAIRWISE_SCHEMA}
    validator = jsonschema.Draft202012Validator(PAIRWISE_SCHEMA)
    for rule, ab, ba in (("first", "A", "A"), ("second", "B", "B")):
        for prompt, want in ((_pair_prompt("x", "y"), ab), (_pair_prompt("y", "x"), ba)):
            reply = json.loads(default_responder(prompt, {**params, "pairwise": rule}))
            assert validator.is_valid(reply) and reply["verdict"] == want
    one = json.loads(default_responder(_pair_prompt("x", "y"), {**params, "pairwise": "content"}))["verdict"]
    other = json.loads(default_responder(_pair_prompt("y", "x"), {**params, "pairwise": "content"}))["verdict"]
    assert {one, other} == {"A", "B"}  # the same reply wins from either position
    assert json.loads(default_responder(_pair_prompt("x", "x"), {**params, "pairwise": "content"}))["verdict"] == "tie"
    assert default_responder(_pair_prompt("x", "y"), {"json_schema": None, "pairwise": "first"}).endswith("[[A]]")
    # Without a rule the schema is filled as always: a valid enum member, whatever the prompt.
    for i in range(20):
        assert validator.is_valid(json.loads(default_responder(_pair_prompt(f"x{i}", "y"), params)))
    with pytest.raises(ValueError, match="pairwise"):
        FaultServer(pairwise="last")


# --- end to end ------------------------------------------------------------------------------------
def _reliability(out: Path) -> pd.DataFrame:
    return read_table(out / "reliability.parquet", "reliability").to_pandas()


@pytest.mark.parametrize("rule", ["first", "content"])
def test_position_bias_of_a_first_always_judge_and_a_consistent_one(tmp_path: Path, rule: str) -> None:
    qpath, apath = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    with FaultServer(pairwise=rule) as srv:
        summary = run_judge(_cfg(srv, max_questions=3), qpath, [apath], out, progress=False)
        pair_calls = [r for r in srv.requests if "<reply_B>" in r.prompt]
    assert len(pair_calls) == 18 and summary.planned == 4 * len(MODELS) + 18
    assert summary.scored == summary.planned and summary.failed == 0
    pairs = read_table(out / "pairwise.parquet", "pairwise").to_pandas()  # schema-valid by the reader
    assert len(pairs) == 18 and pairs.error.isna().all() and pairs.reason.notna().all()
    assert set(pairs.order) == {"ab", "ba"} and (pairs.model_a == "tiny").all()
    outcomes = pairwise_outcomes(pairs)
    (bias,) = _reliability(out).to_dict("records")  # reliability controls are off: only this row
    detail = json.loads(bias["detail"])
    assert (bias["check"], bias["metric"], bias["judge"], bias["n"]) == ("position_bias", "overall", "gpt-4o", 9)
    if rule == "first":
        assert (pairs.verdict_position == "first").all()
        shown_first = pairs.model_a.where(pairs.order == "ab", pairs.model_b)
        assert (pairs.winner == shown_first).all()  # the winner is the model in the chosen position
        assert bias["value"] == 1.0 and bias["rate"] == 1.0 and bias["flagged"]
        assert detail["n_flips"] == 9 and detail["first_wins"] == 18
        assert (outcomes.winner == "tie").all()  # every verdict flipped with the order: no wins
        assert summary.position_bias["gpt-4o"]["flagged"]
    else:
        assert bias["value"] == 0.0 and bias["rate"] == 0.5 and not bias["flagged"]
        assert detail["n_flips"] == 0 and detail["ties"] == 0
        assert outcomes.winner.isin(["tiny", *(f"tiny-{c}" for c in TUNED)]).all()
        assert (outcomes.winner_ab == outcomes.winner_ba).all()


def test_verdicts_read_in_every_output_mode(tmp_path: Path) -> None:
    """JSON schema (OpenAI), JSON mode with the schema in the prompt, Gemini's schema, and free text."""
    qpath, apath = _inputs(tmp_path / "in", n_questions=2)
    out = tmp_path / "out"
    with FaultServer() as srv:  # no rule: verdicts follow the prompt's hash, like a noisy judge
        cfg = _cfg(srv, judges=("oa", "oa-json-mode", "gm"))
        summary = run_judge(cfg, qpath, [apath], out, progress=False)
        gemini = next(r for r in srv.requests if r.protocol == "gemini" and "<reply_B>" in r.prompt).body
        assert "responseJsonSchema" in json.dumps(gemini)
    assert summary.failed == 0
    pairs = read_table(out / "pairwise.parquet", "pairwise").to_pandas()
    assert len(pairs) == 3 * 2 * 3 * 2 and pairs.verdict_position.notna().all()
    assert set(_reliability(out).judge) == {"gpt-4o", "gpt-4-1106-preview", "gemini-2.0-flash"}
    text_out = tmp_path / "text"
    with FaultServer(pairwise="first") as srv:
        cfg = _cfg(srv, max_questions=1)
        cfg.judges[0] = cfg.judges[0].model_copy(update={"structured": False})
        run_judge(cfg, qpath, [apath], text_out, progress=False)
        sent = next(r for r in srv.requests if "<reply_B>" in r.prompt).body
        assert "response_format" not in sent
    text_pairs = read_table(text_out / "pairwise.parquet", "pairwise").to_pandas()
    assert (text_pairs.verdict_position == "first").all() and text_pairs.raw_text.str.endswith("[[A]]").all()


def test_failed_and_unreadable_pairwise_calls_are_rows_with_reasons(tmp_path: Path) -> None:
    qpath, apath = _inputs(tmp_path / "in", n_questions=1)
    out = tmp_path / "out"

    def responder(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        if "<reply_A>\nanswer to q1 by tiny-interview" in messages[-1]["content"]:
            return "Both have merit; I cannot choose."
        return default_responder(messages, {**params, "pairwise": "content"})

    with FaultServer(responder=responder) as srv:
        srv.script(["400"], match="<reply_A>\nanswer to q1 by tiny-combined")
        summary = run_judge(_cfg(srv, top={"parse_retries": 0}), qpath, [apath], out, progress=False)
    assert summary.failures == {"http_4xx": 1, "unparsed": 1}
    pairs = read_table(out / "pairwise.parquet", "pairwise").to_pandas()
    bad = pairs[pairs.winner.isna()]
    assert len(bad) == 2 and bad.verdict_position.isna().all()
    assert bad.error.str.contains("400").sum() == 1 and bad.error.str.startswith("unparsed").sum() == 1
    assert (bad.raw_text == "Both have merit; I cannot choose.").sum() == 1
    (bias,) = _reliability(out).to_dict("records")
    assert bias["n"] == 1 and bias["n_failed"] == 2


def test_resume_makes_only_the_new_pairwise_calls(tmp_path: Path) -> None:
    qpath, apath = _inputs(tmp_path / "in", n_questions=3)
    out = tmp_path / "out"
    with FaultServer(pairwise="content") as srv:
        plain = _cfg(srv)
        plain = plain.model_copy(update={"pairwise": plain.pairwise.model_copy(update={"enabled": False})})
        first = run_judge(plain, qpath, [apath], out, progress=False)
        assert not (out / "pairwise.parquet").exists() and not (out / "reliability.parquet").exists()
        calls = srv.count()
        second = run_judge(_cfg(srv), qpath, [apath], out, progress=False)
        assert second.already_done == first.planned and srv.count() == calls + 18  # the main grades were kept
        before = read_table(out / "pairwise.parquet", "pairwise").to_pandas()
        third = run_judge(_cfg(srv), qpath, [apath], out, progress=False)
        assert srv.count() == calls + 18 and third.called == 0 and third.already_done == third.planned
    assert read_table(out / "pairwise.parquet", "pairwise").to_pandas().equals(before)
    assert set(_reliability(out).check) == {"position_bias"}
