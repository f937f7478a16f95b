"""Batch mode against the fault server's OpenAI Batch and Gemini batch endpoints, with the real SDKs.

Every test runs the batch driver (``mentalchat.engine.batch``) over HTTP on 127.0.0.1: success for
each provider, per-line failures retried in a follow-up batch or online, expiry, the journal that
lets a restarted driver collect its batch instead of paying again, the max-wait error, batch
prices and the budget reservation.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mentalchat.core.rubric import judgment_json_schema
from mentalchat.engine.base import create_engine
from mentalchat.engine.batch import BatchEngine, BatchWaitError, run_batch
from mentalchat.engine.batch_journal import BatchJournal
from mentalchat.engine.budget import BudgetGuard
from mentalchat.engine.openai_backend import openai_params
from mentalchat.engine.pricing import call_cost, estimate_tokens
from mentalchat.engine.types import ChatRequest, SamplingConfig
from mentalchat.testing.fault_server import FaultServer
from mentalchat.testing.fault_server.batch_jobs import BatchSettings

PROVIDERS = ["openai", "gemini"]
FAST = {"poll_interval_s": 0.02, "max_wait_s": 30}
PRICES = {"price_in_per_mtok": 10.0, "price_out_per_mtok": 30.0}


def _requests(n: int = 6, schema: bool = True) -> list[ChatRequest]:
    return [
        ChatRequest.from_prompt(f"r{i}", f"q{i}: rate this answer please", system="You are a strict judge.",
                                sampling=SamplingConfig(temperature=0.0, max_tokens=300),
                                json_schema=judgment_json_schema() if schema else None)
        for i in range(n)
    ]


def _server(**batch: object) -> FaultServer:
    return FaultServer(batch=BatchSettings(**{"validate_s": 0.02, "process_s": 0.1, "finalize_s": 0.02, **batch}))


def _create_calls(srv: FaultServer, backend: str) -> int:
    if backend == "openai":
        return sum(1 for r in srv.requests if r.method == "POST" and r.path == "/v1/batches")
    return sum(1 for r in srv.requests if r.path.endswith(":batchGenerateContent"))


@pytest.mark.parametrize("backend", PROVIDERS)
def test_batch_answers_every_request_like_an_online_call(backend: str, tmp_path: Path) -> None:
    reqs = _requests()
    with _server() as srv:
        online = create_engine(srv.engine_config(backend)).chat_batch(reqs)
        n_online = len(srv.requests)
        results = run_batch(reqs, srv.engine_config(backend, batch=FAST), journal=tmp_path / "j.json")
        batch_calls = srv.requests[n_online:]
    assert [r.id for r in results] == [r.id for r in reqs]
    assert all(r.ok for r in results), [r.error for r in results]
    # the fault server's responder is deterministic per prompt: same prompt, same JSON, same tokens
    assert [r.text for r in results] == [r.text for r in online]
    assert [(r.tokens_in, r.tokens_out) for r in results] == [(r.tokens_in, r.tokens_out) for r in online]
    assert all(json.loads(r.text)["scores"] for r in results)
    assert srv.batches.creates == 1
    assert all(r.protocol in ("openai_batch", "gemini_batch") for r in batch_calls)  # no online call
    job = next(iter(srv.batches.jobs.values()))
    if backend == "openai":
        upload = next(r for r in batch_calls if r.path == "/v1/files")
        assert upload.body["purpose"] == "batch"
        lines = [json.loads(x) for x in srv.batches.files[job.input_file_id].data.decode().splitlines()]
        assert [ln["custom_id"] for ln in lines] == [r.id for r in reqs]
        assert {(ln["method"], ln["url"]) for ln in lines} == {("POST", "/v1/chat/completions")}
        # the same request building as online calls
        assert lines[0]["body"] == openai_params("fault-model", reqs[0], reqs[0].sampling)
    else:
        body = job.items[0].body
        assert body["systemInstruction"]["parts"][0]["text"] == "You are a strict judge."
        assert body["generationConfig"]["responseJsonSchema"] == judgment_json_schema()
        assert body["generationConfig"]["maxOutputTokens"] == 300


@pytest.mark.parametrize("backend", PROVIDERS)
def test_failed_lines_are_retried_in_a_follow_up_batch(backend: str, tmp_path: Path) -> None:
    reqs = _requests()
    with _server() as srv:
        srv.script(["500"], match="q1:")
        srv.script(["429"], match="q2:")
        srv.script(["400"], match="q3:")  # a request the provider rejects: final, as online
        results = run_batch(reqs, srv.engine_config(backend, batch=FAST), journal=tmp_path / "j.json")
        creates = _create_calls(srv, backend)
    by_id = {r.id: r for r in results}
    assert by_id["r1"].ok and by_id["r1"].attempts == 2
    assert by_id["r2"].ok and by_id["r2"].attempts == 2
    assert not by_id["r3"].ok and by_id["r3"].error_kind == "http_4xx" and by_id["r3"].attempts == 1
    assert all(by_id[f"r{i}"].ok and by_id[f"r{i}"].attempts == 1 for i in (0, 4, 5))
    assert creates == 2  # the first batch and one follow-up holding r1 and r2 only
    second = list(srv.batches.jobs.values())[1]
    assert len(second.items) == 2


def test_failed_lines_can_be_retried_online(tmp_path: Path) -> None:
    reqs = _requests()
    with _server() as srv:
        srv.script(["503"], match="q4:")
        cfg = srv.engine_config("openai", batch={**FAST, "retry": "online"})
        results = run_batch(reqs, cfg, journal=tmp_path / "j.json")
        online_calls = srv.count(protocol="openai")
    assert all(r.ok for r in results)
    assert online_calls == 1 and srv.batches.creates == 1


@pytest.mark.parametrize("backend", PROVIDERS)
def test_retries_are_bounded_by_max_rounds(backend: str, tmp_path: Path) -> None:
    with _server() as srv:
        srv.script(["500"] * 5, match="q0:")
        cfg = srv.engine_config(backend, batch={**FAST, "max_rounds": 2})
        results = run_batch(_requests(2), cfg, journal=tmp_path / "j.json")
    assert results[1].ok
    assert not results[0].ok and results[0].error_kind == "http_5xx" and "gave up after 2 batches" in results[0].error
    assert srv.batches.creates == 2


def test_an_expired_batch_keeps_its_answers_and_its_unrun_items_go_again(tmp_path: Path) -> None:
    with _server() as srv:
        # the first batch expires half way (items finish one after another); the follow-up does not
        srv.batches.script_jobs([BatchSettings(validate_s=0.02, process_s=0.4, expire_after_s=0.23)])
        results = run_batch(_requests(4), srv.engine_config("openai", batch=FAST), journal=tmp_path / "j.json")
        jobs = list(srv.batches.jobs.values())
        first_counts = srv.batches.files[jobs[0].error_file_id].data.decode()
    assert all(r.ok for r in results)
    assert [r.attempts for r in results] == [1, 1, 2, 2]
    assert "batch_expired" in first_counts
    assert len(jobs) == 2 and len(jobs[1].items) == 2


@pytest.mark.parametrize("backend", PROVIDERS)
def test_max_wait_raises_naming_the_batch_and_its_state_and_keeps_it_open(backend: str, tmp_path: Path) -> None:
    journal = tmp_path / "j.json"
    with _server(process_s=3600) as srv:
        cfg = srv.engine_config(backend, batch={"poll_interval_s": 0.02, "max_wait_s": 0.3})
        with pytest.raises(BatchWaitError) as info:
            run_batch(_requests(2), cfg, journal=journal)
        job_id = next(iter(srv.batches.jobs))
    msg = str(info.value)
    assert job_id in msg and ("in_progress" in msg or "JOB_STATE_RUNNING" in msg), msg
    assert "max_wait_s" in msg and str(journal) in msg
    (rec,) = BatchJournal(journal).open_records()
    assert rec.batch_id == job_id


@pytest.mark.parametrize("backend", PROVIDERS)
def test_a_restarted_driver_collects_its_open_batch_without_submitting_again(backend: str, tmp_path: Path) -> None:
    journal = tmp_path / "j.json"
    reqs = _requests(3)
    with _server(process_s=0.6) as srv:
        cfg = srv.engine_config(backend, batch=FAST)
        stop = threading.Event()
        # the first driver stops waiting once its batch is submitted (as if the process had died)
        first = run_batch(reqs, cfg, journal=journal, stop=stop,
                          on_progress=lambda p: stop.set())
        assert first == [] and srv.batches.creates == 1
        results = run_batch(reqs, cfg, journal=journal)
        assert srv.batches.creates == 1
    assert all(r.ok for r in results)
    assert [rec.status for rec in BatchJournal(journal).records()] == ["collected"]


@pytest.mark.parametrize("backend", PROVIDERS)
def test_a_batch_created_but_not_journaled_is_found_by_its_tag(backend: str, tmp_path: Path) -> None:
    journal = tmp_path / "j.json"
    reqs = _requests(3)
    with _server(process_s=0.3) as srv:
        cfg = srv.engine_config(backend, batch=FAST)
        stop = threading.Event()
        run_batch(reqs, cfg, journal=journal, stop=stop, on_progress=lambda p: stop.set())
        # a crash between "create" and writing the id: the journal holds the tag only
        data = json.loads(journal.read_text())
        data["batches"][0]["batch_id"] = None
        data["batches"][0]["state"] = "submitting"
        journal.write_text(json.dumps(data))
        results = run_batch(reqs, cfg, journal=journal)
        assert srv.batches.creates == 1
    assert all(r.ok for r in results)


def test_a_changed_request_is_not_answered_by_an_old_batch(tmp_path: Path) -> None:
    journal = tmp_path / "j.json"
    with _server(process_s=0.3) as srv:
        cfg = srv.engine_config("openai", batch=FAST)
        stop = threading.Event()
        run_batch(_requests(2), cfg, journal=journal, stop=stop, on_progress=lambda p: stop.set())
        changed = [r.model_copy(update={"sampling": SamplingConfig(temperature=0.5, max_tokens=300)})
                   for r in _requests(2)]
        results = run_batch(changed, cfg, journal=journal)
        assert srv.batches.creates == 2
    assert all(r.ok for r in results)


@pytest.mark.parametrize("backend", PROVIDERS)
def test_batch_cost_is_half_the_online_cost_for_the_same_tokens(backend: str, tmp_path: Path) -> None:
    reqs = _requests()
    with _server() as srv:
        online = create_engine(srv.engine_config(backend, **PRICES)).chat_batch(reqs)
        batch = run_batch(reqs, srv.engine_config(backend, batch=FAST, **PRICES), journal=tmp_path / "j.json")
        factor = run_batch(reqs, srv.engine_config(backend, batch={**FAST, "price_factor": 0.25}, **PRICES))
    assert sum(r.tokens_in + r.tokens_out for r in batch) == sum(r.tokens_in + r.tokens_out for r in online)
    online_usd = sum(r.cost_usd for r in online)
    assert online_usd > 0
    assert sum(r.cost_usd for r in batch) == pytest.approx(0.5 * online_usd)
    assert sum(r.cost_usd for r in factor) == pytest.approx(0.25 * online_usd)


def test_the_budget_is_reserved_before_submitting(tmp_path: Path) -> None:
    reqs = _requests(6)
    with _server() as srv:
        cfg = srv.engine_config("openai", batch=FAST, **PRICES)
        one = call_cost((5.0, 15.0), estimate_tokens(reqs[0]), 300)  # a worst case at half of PRICES
        budget = BudgetGuard(one * 3.5)  # room for three worst cases
        results = run_batch(reqs, cfg, journal=tmp_path / "j.json", budget=budget)
        job = next(iter(srv.batches.jobs.values()))
    assert [r.error_kind for r in results] == [None, None, None, "budget", "budget", "budget"]
    assert len(job.items) == 3
    snap = budget.spent_usd
    assert snap == pytest.approx(sum(r.cost_usd for r in results)) and snap <= budget.cap_usd


def test_cache_hits_are_free_and_skip_the_batch(tmp_path: Path) -> None:
    reqs = _requests(3)
    with _server() as srv:
        cfg = srv.engine_config("openai", batch=FAST, cache_dir=str(tmp_path / "cache"))
        first = run_batch(reqs, cfg, journal=tmp_path / "j.json")
        again = run_batch(reqs, cfg, journal=tmp_path / "j.json")
        assert srv.batches.creates == 1
    assert all(r.cached and r.cost_usd == 0 for r in again)
    assert [r.text for r in again] == [r.text for r in first]


def test_create_engine_honours_batch_for_any_stage() -> None:
    with _server() as srv:
        engine = create_engine(srv.engine_config("gemini", batch=FAST))
        assert isinstance(engine, BatchEngine)
        with engine:
            results = engine.chat_batch(_requests(2, schema=False))
    assert all(r.ok and r.text.startswith("echo: q") for r in results)
    assert srv.batches.creates == 1


def test_batch_options_parse_true_false_and_mappings() -> None:
    from mentalchat.engine.config import EngineConfig

    assert EngineConfig(backend="openai", model="m", batch=True).batch.poll_interval_s == 30.0
    assert EngineConfig(backend="openai", model="m", batch=False).batch is None
    assert EngineConfig(backend="openai", model="m").batch is None
    assert EngineConfig(backend="openai", model="m", batch={"max_wait_s": 60}).batch.max_wait_s == 60
    with pytest.raises(ValueError, match="poll_every"):
        EngineConfig(backend="openai", model="m", batch={"poll_every": 3})


@pytest.mark.parametrize("backend", PROVIDERS)
def test_a_rejected_key_fails_every_item_and_is_scrubbed_everywhere(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-wrong-secret-key-0123456789abcdef"
    monkeypatch.setenv("BATCH_TEST_KEY", wrong)
    journal = tmp_path / "j.json"
    with FaultServer(api_key="sk-the-right-one-0123456789", batch=BatchSettings()) as srv:
        cfg = srv.engine_config(backend, batch=FAST, api_key_env="BATCH_TEST_KEY")
        results = run_batch(_requests(2), cfg, journal=journal)
        assert srv.count(status=401) >= 1 and srv.batches.creates == 0
    assert all(r.error_kind == "http_4xx" for r in results)
    assert all(wrong not in (r.error or "") for r in results)
    assert all(r.error for r in results)
    assert wrong not in journal.read_text() and wrong not in caplog.text
    assert [rec.status for rec in BatchJournal(journal).records()] == ["abandoned"]


def test_a_batch_the_provider_no_longer_knows_is_submitted_again(tmp_path: Path) -> None:
    journal = tmp_path / "j.json"
    reqs = _requests(2)
    with _server(process_s=0.3) as srv:
        cfg = srv.engine_config("openai", batch=FAST)
        stop = threading.Event()
        run_batch(reqs, cfg, journal=journal, stop=stop, on_progress=lambda p: stop.set())
        srv.batches.jobs.clear()  # e.g. deleted at the provider
        results = run_batch(reqs, cfg, journal=journal)
        assert srv.batches.creates == 2
    assert all(r.ok for r in results)
    assert [rec.status for rec in BatchJournal(journal).records()] == ["abandoned", "collected"]
