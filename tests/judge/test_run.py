"""The judge stage end to end against the local fault server, through the real openai and google-genai SDKs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mentalchat.core.rubric import METRICS, judgment_json_schema
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.publish import BUDGET_SKIP
from mentalchat.judge.run import run_judge
from mentalchat.schemas import read_table
from mentalchat.testing.fault_server import Fault, FaultServer, fill_schema
from mentalchat.testing.fault_server.schema_fill import schema_in_prompt
from mentalchat.testing.fault_server.schema_fill import schema_in_prompt

FAST_HTTP = {"max_retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 1.0, "max_concurrency": 4}


def _cfg(srv: FaultServer, **extra: Any) -> JudgeConfig:
    doc: dict[str, Any] = {
        "judges": [{"engine": "oa"}, {"engine": "gm"}],
        "engines": {
            "oa": {"backend": "openai", "model": "gpt-4-1106-preview", "base_url": srv.openai_base_url,
                   "sampling": {"temperature": 0.0, "max_tokens": 400}, "http": FAST_HTTP},
            "gm": {"backend": "gemini", "model": "gemini-2.0-flash", "base_url": srv.base_url,
                   "sampling": {"temperature": 0.0, "max_tokens": 400}, "http": FAST_HTTP},
        },
    }
    doc.update(extra)
    return JudgeConfig.model_validate(doc)


def _judgments(out: Path):
    return read_table(out / "judgments.parquet", "judgments").to_pandas()


def test_structured_judging_with_faults_every_item_ends_scored_or_failed(tmp_path: Path, inputs) -> None:
    qpath, apath = inputs
    out = tmp_path / "out"
    with FaultServer(latency_s=0.005) as srv:
        # One fault of each kind, each pinned to one item so concurrency cannot reorder them.
        srv.script([Fault("rate_limit", retry_after_s=0.3)], match="answer to q1 by m-a")
        srv.script(["500", "503"], match="answer to q2 by m-a")
        srv.script([Fault("timeout", hang_s=5)], match="answer to q3 by m-a")
        srv.script(["truncated_json", "invalid_json", "disconnect"], match="answer to q4 by m-a")
        srv.script(["refusal"], match="answer to q1 by m-b")
        srv.script(["400"], match="answer to q2 by m-b")  # not retryable
        summary = run_judge(_cfg(srv), qpath, [apath], out, progress=False)
        n_calls = srv.count()

        df = _judgments(out)
        assert summary.planned == 2 * 8  # 2 judges x 8 answers
        assert len(df) == summary.planned * len(METRICS)
        assert summary.scored + summary.failed == summary.planned
        # Every row is either scored 1-10 or carries a reason.
        scored = df[df.score.notna()]
        assert scored.score.between(1, 10).all()
        assert df[df.score.isna()].error.notna().all()
        # Faults that retries can absorb end scored; refusals and 400s end failed with their reason.
        for q in ("1", "2", "3", "4"):
            rows = df[(df.question_id == q) & (df.model == "m-a")]
            assert (rows.parse_status == "ok").all(), rows[["judge", "parse_status", "error"]]
        q1a = df[(df.question_id == "1") & (df.model == "m-a")]
        assert (q1a.attempts >= 2).any()
        refused = df[(df.question_id == "1") & (df.model == "m-b")]
        assert set(refused.parse_status) >= {"failed"}
        assert refused[refused.parse_status == "failed"].error.str.contains("refus").all()
        bad = df[(df.question_id == "2") & (df.model == "m-b") & (df.parse_status == "failed")]
        assert len(bad) == len(METRICS) and bad.error.str.contains("400").all()
        # The retry after the 429 waited at least its Retry-After.
        q1 = sorted(srv.matching(match="answer to q1 by m-a"), key=lambda r: r.t_start)
        limited = [r for r in q1 if r.status == 429]
        assert limited and any(r.t_start >= limited[0].t_end + 0.3 - 1e-3 for r in q1 if r.status == 200)

        # Scores are what the judge said: the server filled the schema deterministically.
        one = scored.iloc[0]
        reply = json.loads(one.raw_text)
        assert one.score == reply["scores"][one.metric] and one.overall == reply["overall"]

        # A rerun is free: nothing new is sent, the tables are the same.
        again = run_judge(_cfg(srv), qpath, [apath], out, progress=False)
        assert srv.count() == n_calls
        assert again.already_done == summary.planned and again.called == 0
        assert _judgments(out).equals(df)
    marker = json.loads((out / "_MENTALCHAT_DONE.json").read_text())
    assert marker["stage"] == "judge"


def test_retry_failed_calls_them_again(tmp_path: Path, inputs) -> None:
    qpath, apath = inputs
    out = tmp_path / "out"
    with FaultServer() as srv:
        srv.script(["refusal"], match="answer to q1 by m-a")
        cfg = _cfg(srv, judges=[{"engine": "oa"}])
        first = run_judge(cfg, qpath, [apath], out, progress=False)
        assert first.failed == 1
        before = srv.count()
        second = run_judge(cfg.model_copy(update={"retry_failed": True}), qpath, [apath], out, progress=False)
        assert srv.count() == before + 1 and second.failed == 0


def test_fastchat_prompt_record_and_text_parsing(tmp_path: Path, inputs, judge_responder) -> None:
    """A user-supplied FastChat judge prompt is sent as is; the text reply is parsed by metric name."""
    qpath, apath = inputs
    record = {
        "name": "my-single", "type": "single", "system_prompt": "SYSTEM-MARKER",
        "prompt_template": "Grade this.\n[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n"
                           "[The End of Assistant's Answer]",
        "output_format": "[[rating]]",
    }
    prompts = tmp_path / "judge_prompts.jsonl"
    prompts.write_text(json.dumps({"name": "other", "type": "pairwise", "prompt_template": "x"}) + "\n"
                       + json.dumps(record) + "\n")
    out = tmp_path / "out"
    with FaultServer(responder=judge_responder) as srv:
        cfg = _cfg(srv, prompts=[{"fastchat_file": str(prompts), "fastchat_name": "my-single"}])
        run_judge(cfg, qpath, [apath], out, progress=False)
        first = srv.requests[0]
        assert "SYSTEM-MARKER" in first.prompt and "Grade this." in first.prompt
        # FastChat prompts ask for text, so no response schema is sent.
        body = first.body
        assert "response_format" not in body and "responseJsonSchema" not in json.dumps(body)
    df = _judgments(out)
    assert set(df.prompt_version) == {"fastchat:my-single"}
    assert (df.parse_status == "ok").all() and df.score.notna().all() and df.overall.notna().all()
    assert df.explanation.str.contains("supportive").all()


def test_fastchat_paper_prompt_from_shared_file(tmp_path: Path, shared_data: Path, inputs, judge_responder) -> None:
    qpath, apath = inputs
    out = tmp_path / "out"
    with FaultServer(responder=judge_responder) as srv:
        cfg = _cfg(srv, judges=[{"engine": "oa"}], prompts=[
            {"fastchat_file": str(shared_data / "eval" / "judge_prompts.jsonl"), "fastchat_name": "single-mental-v1"}
        ])
        summary = run_judge(cfg, qpath, [apath], out, progress=False)
        assert "I have felt low" in srv.requests[0].prompt and "Holistic Approach" in srv.requests[0].prompt
    assert summary.scored == summary.planned


def test_failures_are_counted_by_kind(tmp_path: Path, inputs) -> None:
    """The summary groups unscored items by what went wrong (engine error kinds, unparsed), not by message text."""
    qpath, apath = inputs

    def responder(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        if "answer to q3 by m-a" in messages[-1]["content"]:
            return "I would rather not give numbers."
        # gpt-4-1106-preview has JSON mode only: the schema comes in the prompt.
        schema = params["json_schema"] or schema_in_prompt(messages[-1]["content"])
        return json.dumps(fill_schema(schema, messages[-1]["content"]))

    with FaultServer(responder=responder) as srv:
        srv.script(["400"], match="answer to q1 by m-a")
        srv.script(["refusal"], match="answer to q2 by m-b")
        cfg = _cfg(srv, judges=[{"engine": "oa", "structured": True}])
        summary = run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False)
    assert summary.failures == {"http_4xx": 1, "refused": 1, "unparsed": 1}
    assert summary.scored == summary.planned - 3


def test_unparseable_reply_is_failed_with_reason(tmp_path: Path, inputs) -> None:
    qpath, apath = inputs
    out = tmp_path / "out"
    with FaultServer(responder=lambda m, p: "I would rather not give numbers.") as srv:
        run_judge(_cfg(srv, judges=[{"engine": "oa"}]), qpath, [apath], out, progress=False)
    df = _judgments(out)
    assert (df.parse_status == "unparsed").all() and df.error.str.startswith("unparsed").all()
    assert df.raw_text.eq("I would rather not give numbers.").all()


def test_dry_run_calls_nothing_and_estimates_cost(tmp_path: Path, inputs) -> None:
    qpath, apath = inputs
    out = tmp_path / "out"
    lines: list[str] = []
    with FaultServer() as srv:
        cfg = _cfg(srv)
        cfg.engines["oa"] = cfg.engines["oa"].model_copy(update={"price_in_per_mtok": 10.0, "price_out_per_mtok": 30.0})
        summary = run_judge(cfg, qpath, [apath], out, dry_run=True, echo=lines.append)
        assert srv.count() == 0
    assert not out.exists()
    assert summary.per_judge["gpt-4-1106-preview"]["calls"] == 8
    assert summary.per_judge["gpt-4-1106-preview"]["est_cost_usd"] > 0
    assert summary.per_judge["gemini-2.0-flash"]["est_cost_usd"] == 0  # local endpoint, no price given
    text = "\n".join(lines)
    assert "16 judge calls planned" in text and "estimated cost" in text


def test_budget_cap_stops_calls_and_a_rerun_finishes(tmp_path: Path, make_inputs) -> None:
    qpath, apath = make_inputs(tmp_path / "in", n_questions=6)
    out = tmp_path / "out"
    with FaultServer() as srv:
        cfg = _cfg(srv, judges=[{"engine": "oa"}])
        priced = cfg.engines["oa"].model_copy(update={"price_in_per_mtok": 1000.0, "price_out_per_mtok": 1000.0})
        cfg.engines["oa"] = priced
        # One call costs (prompt ~400 words + ~60 out) * $1000/M ~ $0.4-0.5, worst case ($0.9) reserved first.
        cfg = cfg.model_copy(update={"budget_usd": 2.0})
        first = run_judge(cfg, qpath, [apath], out, progress=False)
        assert first.skipped_budget > 0 and first.scored + first.skipped_budget == first.planned
        assert first.spent_usd <= 2.0
        df = _judgments(out)
        skipped = df[df.error == BUDGET_SKIP]
        assert len(skipped) == first.skipped_budget * len(METRICS)
        calls = srv.count()
        assert calls == first.scored
        second = run_judge(cfg.model_copy(update={"budget_usd": 100.0}), qpath, [apath], out, progress=False)
        assert srv.count() == calls + first.skipped_budget
        assert second.scored == second.planned


def test_reliability_controls_flag_empty_and_length_bias(tmp_path: Path, inputs, judge_responder) -> None:
    qpath, apath = inputs
    out = tmp_path / "out"
    with FaultServer(responder=judge_responder) as srv:
        cfg = _cfg(srv, judges=[{"engine": "oa", "structured": False}], reliability={
            "enabled": True, "empty_answer_questions": 2, "length_bias_samples": 3, "consistency_samples": 2,
        })
        summary = run_judge(cfg, qpath, [apath], out, progress=False)
        repeats = [r for r in srv.requests if r.body.get("seed") is not None]
        assert len(repeats) == 2  # re-judged with a seed, so the cache could not answer them
    assert summary.planned == 8 + 2 + 3 + 2
    main = _judgments(out)
    assert not main.model.str.startswith("control:").any() and len(main) == 8 * len(METRICS)
    controls = read_table(out / "reliability_judgments.parquet", "judgments").to_pandas()
    assert set(controls.model) >= {"control:empty"}
    rel = read_table(out / "reliability.parquet", "reliability").to_pandas().set_index(["check", "metric"])
    assert rel.loc[("empty_answer", "overall"), "flagged"]  # the judge gave an empty answer 8
    assert rel.loc[("empty_answer", "overall"), "value"] == 8
    assert rel.loc[("length_bias", "overall"), "value"] > 0.5 and rel.loc[("length_bias", "overall"), "flagged"]
    assert rel.loc[("self_consistency", "overall"), "value"] == 0 and not rel.loc[("self_consistency", "overall"), "flagged"]
    assert (rel.reset_index().groupby("check").size() == len(METRICS) + 1).all()


def test_answers_from_fastchat_model_answer_files(tmp_path: Path, inputs) -> None:
    qpath, _ = inputs
    folder = tmp_path / "model_answer"
    folder.mkdir()
    with (folder / "zephyr-7b-gpt-1025.jsonl").open("w") as fh:
        for i in (1, 2):
            fh.write(json.dumps({"question_id": i, "answer_id": i, "model_id": "HuggingFaceH4/zephyr",
                                 "choices": [{"index": 0, "turns": [f"reply {i}"]}], "tstamp": 0}) + "\n")
    out = tmp_path / "out"
    with FaultServer() as srv:
        run_judge(_cfg(srv, judges=[{"engine": "oa"}]), qpath, [folder], out, progress=False)
    df = _judgments(out)
    assert set(df.model) == {"zephyr-7b-gpt-1025"} and set(df.question_id) == {"1", "2"}
    assert set(df.data_config) == {"synthetic"}  # mapped with the paper's naming


def test_bad_config_names_the_problem(tmp_path: Path, inputs) -> None:
    qpath, apath = inputs
    with FaultServer() as srv:
        cfg = _cfg(srv, judges=[{"engine": "nope"}])
        with pytest.raises(ValueError, match="nope"):
            run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False)


def test_human_ratings_join_the_judgments_table_and_survive_a_rerun(tmp_path: Path, inputs) -> None:
    from mentalchat.judge.human import import_human_ratings

    qpath, apath = inputs
    out = tmp_path / "out"
    csv = tmp_path / "ratings.csv"
    header = ["rater", "question_id", "model", *METRICS, "overall"]
    csv.write_text(",".join(f'"{h}"' for h in header) + "\n" + ",".join(["ann", "1", "m-a"] + ["7"] * 8) + "\n")
    with FaultServer() as srv:
        cfg = _cfg(srv, judges=[{"engine": "oa"}])
        run_judge(cfg, qpath, [apath], out, progress=False)
        import_human_ratings(csv, out)
        df = _judgments(out)
        assert set(df.judge) == {"gpt-4-1106-preview", "human:ann"}
        human = df[df.judge == "human:ann"]
        assert len(human) == len(METRICS) and (human.score == 7).all()
        run_judge(cfg.model_copy(update={"retry_failed": True}), qpath, [apath], out, progress=False)
    assert len(_judgments(out)[lambda d: d.judge == "human:ann"]) == len(METRICS)


def test_sdk_environment_variables_point_judges_at_a_local_server(tmp_path: Path, inputs, monkeypatch) -> None:
    qpath, apath = inputs

    def follows_the_prompt(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        """JSON as the prompt asks; fenced, as chat models often do when no schema binds them."""
        prompt = "\n".join(m["content"] for m in messages)
        reply = json.dumps(fill_schema(params["json_schema"] or judgment_json_schema(), prompt))
        return reply if params["json_schema"] else f"Here is my grading:\n```json\n{reply}\n```"

    with FaultServer(api_key="env-key-123456", responder=follows_the_prompt) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.openai_base_url)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "env-key-123456")
        monkeypatch.setenv("GEMINI_API_KEY", "env-key-123456")
        cfg = JudgeConfig.model_validate({
            "judges": [{"engine": "gpt4-judge"}, {"engine": "gemini-judge"}],
            "engines": {"gpt4-judge": {"backend": "openai", "model": "gpt-4-1106-preview"},
                        "gemini-judge": {"backend": "gemini", "model": "gemini-pro"}},
        })
        summary = run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False)
        assert {r.protocol for r in srv.requests} == {"openai", "gemini"}
        assert srv.count(status=401) == 0
    assert summary.scored == summary.planned == 16
    # gemini-pro has no structured output: the prompt alone asks for JSON, and the reply is parsed.
    gem = [r for r in srv.requests if r.protocol == "gemini"][0].body
    assert "responseJsonSchema" not in json.dumps(gem) and "responseSchema" not in json.dumps(gem)
    df = _judgments(tmp_path / "out")
    assert (df.parse_status == "ok").all() and df.raw_text[df.judge == "gemini-pro"].str.contains("```json").all()
