"""Multi-turn judging against the local fault server: per-turn items in context, turn-0 conversation
items, turn-aware ids, single-turn-only controls and pairwise, and a cached rerun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mentalchat.core.questions import bundled_multiturn_questions, load_questions
from mentalchat.core.rubric import CONVERSATION_METRICS, METRICS
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.items import item_id
from mentalchat.judge.plan import load_answers, plan_items
from mentalchat.judge.run import run_judge
from mentalchat.schemas import get_table, read_table, write_table
from mentalchat.testing.fault_server import FaultServer

FAST_HTTP = {"max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2.0, "max_concurrency": 4}
MODELS = ("m-a", "m-b")


def _cfg(srv: FaultServer | None, **extra: Any) -> JudgeConfig:
    url = srv.openai_base_url if srv is not None else "http://127.0.0.1:9/v1"
    doc: dict[str, Any] = {
        "judges": [{"engine": "oa"}],
        "engines": {"oa": {"backend": "openai", "model": "gpt-4-1106-preview", "base_url": url,
                           "sampling": {"temperature": 0.0, "max_tokens": 400}, "http": FAST_HTTP}},
    }
    doc.update(extra)
    return JudgeConfig.model_validate(doc)


def _inputs(folder: Path) -> tuple[Path, Path]:
    """Two single-turn questions plus the bundled two-turn ones; answers per turn for every model."""
    folder.mkdir(parents=True, exist_ok=True)
    qpath = folder / "questions.jsonl"
    lines = [json.dumps({"question_id": f"s{i}", "category": "generic", "turns": [f"single q{i}: I feel low."]})
             for i in (1, 2)]
    lines += bundled_multiturn_questions().read_text().strip().splitlines()
    qpath.write_text("\n".join(lines) + "\n")
    rows: list[dict[str, Any]] = []
    for q in load_questions(qpath):
        for m in MODELS:
            common = {"question_id": q.question_id, "model_id": m, "base_model": "tiny", "data_config": "base"}
            if not q.is_multi_turn:
                rows.append({**common, "answer": f"single answer {q.question_id} by {m}: that sounds hard."})
            else:
                rows += [{**common, "turn": k, "answer": f"ANSWER-{q.question_id}-T{k}-{m}: I hear you."}
                         for k in range(1, len(q.turns) + 1)]
    apath = folder / "answers.parquet"
    write_table(get_table("answers").from_rows(rows), apath, "answers")
    return qpath, apath


def test_turn_two_prompt_holds_turn_one_client_text_and_own_answer(tmp_path: Path) -> None:
    qpath, apath = _inputs(tmp_path / "in")
    q = {x.question_id: x for x in load_questions(qpath)}["mt2"]
    with FaultServer() as srv:
        run_judge(_cfg(srv), qpath, [apath], tmp_path / "out", progress=False)
        prompts = [r.body["messages"][-1]["content"] for r in srv.requests]
    turn2 = [p for p in prompts if "ANSWER-mt2-T2-m-a" in p and "<assistant_reply>" in p]
    assert len(turn2) == 1
    assert q.turns[0] in turn2[0] and q.turns[1] in turn2[0]
    assert "ANSWER-mt2-T1-m-a" in turn2[0]  # the model's own turn-1 answer is in context
    assert "m-b" not in turn2[0]  # and no other model's
    turn1 = [p for p in prompts if "ANSWER-mt2-T1-m-a" in p and "<assistant_reply>" in p
             and "ANSWER-mt2-T2-m-a" not in p]
    assert len(turn1) == 1 and q.turns[1] not in turn1[0]  # turn 1 does not see the future


def test_judgments_per_turn_and_whole_conversation(tmp_path: Path) -> None:
    qpath, apath = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    with FaultServer() as srv:
        summary = run_judge(_cfg(srv), qpath, [apath], out, progress=False)
        n_calls = srv.count()
    # 2 single + 4 questions x 2 turns, per model, plus one conversation item per (question, model)
    assert summary.planned == 2 * 2 + 4 * 2 * 2 + 4 * 2 == n_calls
    df = read_table(out / "judgments.parquet", "judgments").to_pandas()
    assert df.parse_status.eq("ok").all() and df.score.between(1, 10).all()
    single = df[df.turn.isna()]
    assert set(single.question_id) == {"s1", "s2"} and set(single.metric) == set(METRICS)
    per_turn = df[df.turn.isin([1, 2])]
    assert set(per_turn.metric) == set(METRICS) and len(per_turn) == 4 * 2 * 2 * len(METRICS)
    conv = df[df.turn == 0]
    assert sorted(set(conv.metric)) == sorted(CONVERSATION_METRICS) == ["consistency", "memory", "risk_escalation"]
    assert len(conv) == 4 * 2 * 3 and set(conv.question_id) == {"mt1", "mt2", "mt3", "mt4"}
    assert conv.overall.isna().all()

    with FaultServer() as srv:  # a rerun finds everything done: no calls at all
        again = run_judge(_cfg(srv), qpath, [apath], out, progress=False)
        assert srv.count() == 0
    assert again.already_done == again.planned == summary.planned
    df2 = read_table(out / "judgments.parquet", "judgments").to_pandas()
    assert df2.sort_values(["question_id", "model", "turn", "metric"]).score.tolist() == \
        df.sort_values(["question_id", "model", "turn", "metric"]).score.tolist()


def test_ids_differ_per_turn_and_single_turn_ids_unchanged(tmp_path: Path) -> None:
    qpath, apath = _inputs(tmp_path / "in")
    plan = plan_items(_cfg(None), load_questions(qpath), load_answers([apath]))
    ids = [it.id for it in plan.items]
    assert len(set(ids)) == len(ids)
    # The same answer text at turn 1 and turn 2 must not share a record.
    assert item_id("main", "j", "v", "q", "m", "same", turn=1) != item_id("main", "j", "v", "q", "m", "same", turn=2)
    # A single-turn id is the pre-multi-turn hash (pinned), so existing caches keep hitting.
    assert item_id("main", "j", "v", "q", "m", "a") == item_id("main", "j", "v", "q", "m", "a", turn=None)
    assert item_id("main", "j", "v", "q", "m", "a") == "4f017ddc84eb63cfdd0a69d2"


def test_pairwise_reliability_and_crisis_ignore_multi_turn_rows(tmp_path: Path) -> None:
    qpath, apath = _inputs(tmp_path / "in")
    cfg = _cfg(None, reliability={"enabled": True, "empty_answer_questions": 10, "length_bias_samples": 10,
                                  "consistency_samples": 10},
               pairwise={"enabled": True, "pairs": "all"})
    plan = plan_items(cfg, load_questions(qpath), load_answers([apath]))
    others = [it for it in plan.items if it.kind not in ("main", "conversation")]
    assert {it.kind for it in others} >= {"pairwise", "empty", "padded", "repeat"}
    assert all(it.turn is None and it.question_id in {"s1", "s2"} for it in others)
    assert all("ANSWER-" not in (it.answer + (it.answer_b or "")) for it in others)
    multi = [it for it in plan.items if it.turn is not None]
    assert multi and all(it.kind in ("main", "conversation") for it in multi)


def test_conversation_replies_are_parsed_tolerantly() -> None:
    from mentalchat.judge.multiturn import conversation_scores

    fenced = 'Sure:\n```json\n{"explanation": "ok", "scores": {"consistency": 8, "memory": 6, "risk_escalation": 3}}\n```'
    assert conversation_scores(fenced) == ({"consistency": 8.0, "memory": 6.0, "risk_escalation": 3.0}, "ok", "ok")
    text = "Steady throughout.\nconsistency: [[7]]\nMemory: 5\nrisk_escalation: [[11]]"
    scores, _, status = conversation_scores(text)
    assert scores == {"consistency": 7.0, "memory": 5.0, "risk_escalation": None} and status == "partial"
    assert conversation_scores("no idea")[2] == "unparsed" and conversation_scores(None)[2] == "unparsed"


def test_two_turn_fastchat_model_answers_are_judged_per_turn(tmp_path: Path) -> None:
    qpath, _ = _inputs(tmp_path / "in")
    folder = tmp_path / "model_answer"
    folder.mkdir()
    recs = [{"question_id": qid, "model_id": "m-fc", "answer_id": qid, "tstamp": 0.0,
             "choices": [{"index": 0, "turns": [f"FC-{qid}-T1", f"FC-{qid}-T2"]}]} for qid in ("mt1", "mt2")]
    (folder / "m-fc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    with FaultServer() as srv:
        run_judge(_cfg(srv), qpath, [folder], tmp_path / "out", progress=False)
        turn2 = [r.body["messages"][-1]["content"] for r in srv.requests
                 if "FC-mt1-T2" in r.body["messages"][-1]["content"] and "<assistant_reply>" in r.body["messages"][-1]["content"]]
    assert len(turn2) == 1 and "FC-mt1-T1" in turn2[0]
    df = read_table(tmp_path / "out" / "judgments.parquet", "judgments").to_pandas()
    assert sorted(df.turn.dropna().astype(int).unique().tolist()) == [0, 1, 2]


def test_max_questions_keeps_the_first_multi_turn_questions_too(tmp_path: Path) -> None:
    """judge.max_questions=1 keeps s1 and the first multi-turn question (listed after the benchmark),
    as generate's limit does, instead of cutting every multi-turn question off."""
    qpath, apath = _inputs(tmp_path / "in")
    plan = plan_items(_cfg(None, max_questions=1), load_questions(qpath), load_answers([apath]))
    first_mt = next(q.question_id for q in load_questions(qpath) if q.is_multi_turn)
    assert {it.question_id for it in plan.items if it.kind in ("main", "conversation")} == {"s1", first_mt}
