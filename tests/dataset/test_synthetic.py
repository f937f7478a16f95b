"""Synthetic path against a local OpenAI-compatible server (real openai client over HTTP)."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from mentalchat.config import load_stage_config
from mentalchat.dataset.build import build_dataset, default_work_dir
from mentalchat.dataset.config import DatasetConfig
from mentalchat.testing.fault_server import FaultServer

TOPICS = {"Anxiety": 0.5, "Sleep Improvement": 0.25, "Grief and Loss": 0.25}
_COUNTER = itertools.count()
VOCAB = ("work sleep family money school partner friends health future mornings evenings phone news "
         "meetings exams bills neighbours deadlines parents children weekends traffic emails").split()
FILLER = ("I have tried talking to friends and keeping a journal, and some days are better than others, "
          "but the feeling keeps coming back and I do not know what else to try at this point.")


def responder(messages: list[dict], params: dict) -> str:
    """Step 1: one message per listed topic; step 2: an answer shaped by the message."""
    user = messages[-1]["content"]
    if params.get("json_schema") is not None:
        topics = re.findall(r"^\d+\. (.+)$", user, re.M)
        out = []
        for i, t in enumerate(topics):
            if t == "Sleep Improvement":
                msg = "Cannot sleep."  # too short
            elif t == "Self-harm":
                rng = random.Random(next(_COUNTER))
                words = " ".join(rng.choice(VOCAB) for _ in range(40))
                msg = f"I started cutting my arms again when {words} gets too much."
            elif t == "Grief and Loss":
                msg = f"Since my father died I keep thinking about killing myself. {FILLER}"
            else:  # distinct texts (near-duplicates would be dropped, rightly)
                rng = random.Random(next(_COUNTER))
                words = " ".join(rng.choice(VOCAB) for _ in range(40))
                msg = f"Slot {i}: I worry about {t.lower()} constantly, {words}."
            out.append({"topic": t, "message": msg})
        return json.dumps({"messages": out})
    if "cutting my arms" in user and "counsellor" in messages[0]["content"]:
        return ("Thank you for telling me; that takes courage. " * 3 + "Please call or text 988 tonight."
                if "gets too much" in user and "sleep" in user else
                "Thank you for telling me; that takes courage. " * 6)
    if "killing myself" in user:
        return "As an AI language model I cannot truly understand, but " + " ".join(["grief takes time."] * 20)
    return ("It sounds exhausting to carry this worry every day, and it makes sense that you feel worn down. "
            + " ".join(["One small step is to set aside a short worry period each evening."] * 5))


def _cfg(srv: FaultServer, tmp_path: Path, **synthetic) -> DatasetConfig:
    eng = srv.engine_config(model="fault-model", price_in_per_mtok=1.0, price_out_per_mtok=2.0,
                            http={"max_concurrency": 2})
    syn = {"enabled": True, "engine": "syn", "n_messages": 12, "messages_per_call": 3, "topics": TOPICS,
           "min_message_words": 10, "min_answer_words": 30, "chunk_size": 2, **synthetic}
    return DatasetConfig(engines={"syn": eng}, interview={"enabled": False}, synthetic=syn, run={"seed": 5})


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")


def test_synthetic_build_filters_and_topics(tmp_path: Path) -> None:
    with FaultServer(responder=responder) as srv:
        cfg = _cfg(srv, tmp_path)
        stats = build_dataset(cfg, tmp_path / "ds", echo=lambda m: None)
        qa = pq.read_table(tmp_path / "ds/qa_pairs.parquet").to_pandas()
        rej = pq.read_table(tmp_path / "ds/rejects.parquet").to_pandas()
        slots = Counter(r.topic for r in qa.itertuples()) + Counter(r.topic for r in rej.itertuples())
        assert sum(slots.values()) == 12
        assert set(qa.topic) == {"Anxiety"}
        filters = Counter(rej["filter"])
        assert filters["too_short"] == slots["Sleep Improvement"] > 0
        # identical grief messages: the first is answered (with a disclaimer: dropped), the rest are near-duplicates
        assert filters["refusal"] == 1 and filters["near_duplicate"] == slots["Grief and Loss"] - 1
        assert (qa.source == "synthetic").all() and qa.prompt_version.eq("synthetic-v1").all()
        assert stats["synthetic"]["calls"] == {"step1_requests": 4, "step1_new_calls": 4,
                                               "step2_requests": len(qa) + filters["refusal"],
                                               "step2_new_calls": len(qa) + filters["refusal"]}
        assert stats["synthetic"]["cost_usd"] > 0
        card = (tmp_path / "ds/README.md").read_text()
        assert "| Anxiety |" in card and "## Crisis audit" in card
        # a rerun with the same output repeats no call
        n = len(srv.requests)
        stats2 = build_dataset(cfg, tmp_path / "ds", echo=lambda m: None)
        assert len(srv.requests) == n and stats2["synthetic"]["calls"]["step2_new_calls"] == 0


PLANTED = ("My flatmate plays loud music until three every night and I have started to dread going home; "
           "when I ask him to stop he laughs, and now I lie awake angry and exhausted before every early shift.")


def _planting_responder(messages: list[dict], params: dict) -> str:
    """The usual answers; step 1 returns the planted message and distinct fixed ones."""
    if params.get("json_schema") is None:
        return responder(messages, params)
    topics = re.findall(r"^\d+\. (.+)$", messages[-1]["content"], re.MULTILINE)
    k = next(_COUNTER)
    msgs = [PLANTED if k == 0 and i == 0 else
            f"Call {k} slot {i}: {' '.join(VOCAB[(k * 7 + i * 3 + j) % len(VOCAB)] for j in range(3))} keep "
            f"me worried. {FILLER}" for i in range(len(topics))]
    return json.dumps({"messages": [{"topic": t, "message": m} for t, m in zip(topics, msgs, strict=True)]})


def test_card_counts_pairs_that_copy_a_benchmark_question(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_COUNTER", itertools.count())
    questions = tmp_path / "question.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "category": "c", "turns": [PLANTED]}) + "\n", encoding="utf-8")
    with FaultServer(responder=_planting_responder) as srv:
        cfg = _cfg(srv, tmp_path, topics={"Anxiety": 1.0}, n_messages=6, dedup_threshold=0.95)
        stats = build_dataset(cfg, tmp_path / "ds", echo=lambda m: None, benchmark=questions)
    qa = pq.read_table(tmp_path / "ds/qa_pairs.parquet").to_pandas()
    assert PLANTED in set(qa.input) and len(qa) >= 2
    dec = stats["decontamination"]
    assert dec["flagged"] == 1 and dec["flagged_by_source"] == {"synthetic": 1} and dec["reference"] == str(questions)
    report = json.loads((tmp_path / "ds/decontamination.json").read_text())
    assert report["pairs"][0]["id"] == qa.id[qa.input == PLANTED].item() and report["pairs"][0]["question_id"] == "1"
    card = (tmp_path / "ds/README.md").read_text()
    assert "## Benchmark overlap (decontamination)" in card and "flagged: **1** (synthetic 1)" in card


def test_crisis_audit_counts_answers_without_escalation(tmp_path: Path) -> None:
    with FaultServer(responder=responder) as srv:
        cfg = _cfg(srv, tmp_path, topics={"Self-harm": 1.0}, min_answer_words=1)
        stats = build_dataset(cfg, tmp_path / "ds", echo=lambda m: None)
    qa = pq.read_table(tmp_path / "ds/qa_pairs.parquet").to_pandas()
    # the classifier layer may add a category on the 40 random words ("partner", "phone", "money"
    # are abuse cues to a bag of words); self-harm must always be among them
    assert len(qa) >= 8 and qa.crisis_flag.all()
    assert qa.crisis_categories.map(lambda c: "self_harm" in c.split(",")).all()
    escalated = qa.output.str.contains("988")
    assert (qa.crisis_escalated == escalated).all()
    assert stats["crisis"] == {"flagged": len(qa), "without_escalation": int((~escalated).sum())}
    assert 0 < stats["crisis"]["without_escalation"] < len(qa)
    card = (tmp_path / "ds/README.md").read_text()
    assert f"| **total** | **{len(qa)}** | **{int((~escalated).sum())}** |" in card


def test_dry_run_calls_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FaultServer(responder=responder) as srv:
        cfg = _cfg(srv, tmp_path, n_messages=1000, messages_per_call=5)
        out: list[str] = []
        plan = build_dataset(cfg, tmp_path / "ds", dry_run=True, echo=out.append)["dry_run"]["synthetic"]
        assert len(srv.requests) == 0 and not (tmp_path / "ds").exists()
    assert plan["calls_step1_messages"] == 200 and plan["calls_step2_answers_max"] == 1000
    assert plan["est_cost_usd_upper_bound"] >= plan["est_cost_usd_typical"] > 0
    assert "est_cost_usd_typical" in out[0]


def test_failed_calls_are_retried_by_a_rerun_and_nothing_else(tmp_path: Path) -> None:
    with FaultServer(responder=responder) as srv:
        cfg = _cfg(srv, tmp_path)
        cfg.engines["syn"].http.max_retries = 0
        srv.script(["500"], match="Slot 0: I worry")  # the first answer call of one message fails once
        first = build_dataset(cfg, tmp_path / "ds", echo=lambda m: None)
        rej = pq.read_table(tmp_path / "ds/rejects.parquet").to_pandas()
        assert (rej["filter"] == "engine_error").sum() == 1
        n = len(srv.requests)
        second = build_dataset(cfg, tmp_path / "ds", echo=lambda m: None)
        assert len(srv.requests) == n + 1  # only the failed call again
        assert second["pairs"] == first["pairs"] + 1


def test_a_killed_run_resumes_without_repeating_calls(tmp_path: Path, repo_root: Path) -> None:
    """A real crash: the job is SIGKILLed mid-run, then rerun; no request body is sent twice."""
    with FaultServer(responder=responder, latency_s=0.4) as srv:
        cfg = _cfg(srv, tmp_path)
        doc = {"engines": {"syn": json.loads(cfg.engines["syn"].model_dump_json(exclude_none=True))},
               "dataset": {"interview": {"enabled": False},
                           "synthetic": json.loads(cfg.synthetic.model_dump_json(exclude_none=True))},
               "run": {"seed": 5}}
        conf = tmp_path / "c.yaml"
        conf.write_text(yaml.safe_dump(doc))
        out = tmp_path / "ds"
        log = default_work_dir(out) / "calls.jsonl"
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-secret"}
        proc = subprocess.Popen([sys.executable, str(repo_root / "jobs/build_dataset.py"), "--config", str(conf),
                                 "--output", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 4):
                time.sleep(0.1)
            assert proc.poll() is None, "the job finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert not out.exists()  # nothing partial was published
        done_before = len(log.read_text().splitlines())
        stats = build_dataset(load_stage_config(DatasetConfig, conf, [], section="dataset"), out, echo=lambda m: None)
        bodies = [json.dumps(r.body["messages"], sort_keys=True) for r in srv.requests if r.status == 200]
        repeats = [b for b, c in Counter(bodies).items() if c > 1]
        # A call in flight at the kill may be sent again; a call that had finished may not.
        in_flight_at_kill = len(bodies) - len(set(bodies))
        assert in_flight_at_kill <= cfg.engines["syn"].http.max_concurrency, repeats
        calls = stats["synthetic"]["calls"]
        total = calls["step1_requests"] + calls["step2_requests"]
        assert calls["step1_new_calls"] + calls["step2_new_calls"] == total - done_before
        assert (out / "qa_pairs.parquet").exists()


def test_preflight_checks_the_synthesizer_once_and_reuses_the_call(tmp_path: Path) -> None:
    """--preflight: one check call before the sweep; it is logged, so step 1 does not pay for it again."""
    with FaultServer(responder=responder) as srv:
        cfg = _cfg(srv, tmp_path, preflight="always")
        stats = build_dataset(cfg, tmp_path / "ds", echo=lambda m: None)
    assert stats["synthetic"]["calls"]["step1_requests"] == 4
    assert stats["synthetic"]["calls"]["step1_new_calls"] == 3  # the first was the check call
    bodies = [json.dumps(r.body["messages"], sort_keys=True) for r in srv.requests if r.status == 200]
    assert len(bodies) == len(set(bodies))  # nothing sent twice


def test_preflight_stops_a_synthetic_build_with_a_wrong_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mentalchat.engine.preflight import PreflightError
    from mentalchat.testing.fault_server import ProviderRules

    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-0000000000")
    with FaultServer(responder=responder, api_key="sk-right-1111111111", rules=ProviderRules()) as srv:
        cfg = _cfg(srv, tmp_path, preflight="always")
        with pytest.raises(PreflightError, match=r"engine 'syn'.*\$OPENAI_API_KEY"):
            build_dataset(cfg, tmp_path / "ds", echo=lambda m: None)
        assert srv.count() == 1
    assert not (tmp_path / "ds").exists()


def test_batch_mode_builds_the_same_dataset_at_half_the_cost(tmp_path: Path) -> None:
    from mentalchat.engine.batch_config import BatchOptions
    from mentalchat.engine.batch_journal import BatchJournal
    from mentalchat.testing.fault_server.batch_jobs import BatchSettings

    with FaultServer(responder=responder, batch=BatchSettings(validate_s=0.02, process_s=0.1)) as srv:
        online = build_dataset(_cfg(srv, tmp_path), tmp_path / "online", echo=lambda m: None)
        n_online = len(srv.requests)
        cfg = _cfg(srv, tmp_path)
        cfg.engines["syn"] = cfg.engines["syn"].model_copy(update={"batch": BatchOptions(poll_interval_s=0.02)})
        batch = build_dataset(cfg, tmp_path / "batch", echo=lambda m: None)
        calls = srv.requests[n_online:]
        assert srv.batches.creates == 2  # one batch per step, not one per chunk
    assert {r.protocol for r in calls} == {"openai_batch"}
    assert batch["pairs"] == online["pairs"] > 0
    assert batch["synthetic"]["cost_usd"] == pytest.approx(0.5 * online["synthetic"]["cost_usd"])
    (journal,) = default_work_dir(tmp_path / "batch").rglob("_batches.json")
    assert [r.status for r in BatchJournal(journal).records()] == ["collected", "collected"]
