"""The shared HTTP call loop, driven through the real openai and google-genai clients.

Every test runs against :class:`FaultServer` on 127.0.0.1 and asserts on what the server recorded
(call counts, timestamps, in-flight counts), so a loop that skips a retry, retries what it must not,
or ignores Retry-After fails here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path

import pytest

from mentalchat.engine import ChatRequest, create_engine
from mentalchat.engine.budget import BudgetGuard
from mentalchat.engine.http import HTTPEngine
from mentalchat.engine.pricing import call_cost, is_local_url, price_for
from mentalchat.engine.retry import parse_retry_after
from mentalchat.secrets import scrub
from mentalchat.testing.fault_server import Fault, FaultServer

BACKENDS = ["openai", "gemini"]


@pytest.fixture
def srv():
    with FaultServer() as server:
        yield server


def engine(srv: FaultServer, backend: str, **fields) -> HTTPEngine:
    eng = create_engine(srv.engine_config(backend, **fields))
    assert isinstance(eng, HTTPEngine)
    return eng


def reqs(n: int, prefix: str = "q") -> list[ChatRequest]:
    return [ChatRequest.from_prompt(f"{prefix}{i}", f"question {prefix}{i} please", system="be kind", metadata={"i": i}) for i in range(n)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_end_to_end(srv: FaultServer, backend: str) -> None:
    with engine(srv, backend) as eng:
        res = eng.chat_batch(reqs(6))
    assert [r.id for r in res] == [f"q{i}" for i in range(6)]
    assert all(r.ok and r.text == f"echo: question q{i} please" for i, r in enumerate(res))
    assert all(r.attempts == 1 and r.finish_reason == "stop" and not r.cached for r in res)
    assert all(r.provider == backend and r.model == "fault-model" and r.metadata == {"i": i} for i, r in enumerate(res))
    # tokens are the server's usage figures (words): prompt "be kind" + "question qN please"
    assert all(r.tokens_in == 5 and r.tokens_out == 4 for r in res)
    assert all(r.cost_usd == 0.0 for r in res)  # localhost is free
    assert srv.count(protocol=backend) == 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_retry_after_is_honoured(srv: FaultServer, backend: str) -> None:
    srv.script([Fault("rate_limit", retry_after_s=0.4)], match="qa0")
    with engine(srv, backend) as eng:
        (res,) = eng.chat_batch(reqs(1, "qa"))
    assert res.ok and res.attempts == 2
    first, second = srv.matching(match="qa0")
    assert first.status == 429 and second.status == 200
    assert second.t_start - first.t_end >= 0.4


def test_retry_delay_from_gemini_body(srv: FaultServer) -> None:
    srv.script([Fault("rate_limit", retry_after_s=0.3, retry_after_header=False)])
    with engine(srv, "gemini") as eng:
        (res,) = eng.chat_batch(reqs(1))
    first, second = srv.requests
    assert res.ok and second.t_start - first.t_end >= 0.3


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrency_adapts_to_429(srv: FaultServer, backend: str) -> None:
    srv.latency_s = 0.05
    srv.script([Fault("rate_limit", retry_after_s=0.2)] * 8)
    with engine(srv, backend, http={"max_concurrency": 8, "min_concurrency": 1}) as eng:
        res = eng.chat_batch(reqs(40))
        stats = eng.limiter_stats()
    assert all(r.ok for r in res)
    limited = srv.matching(status=429)
    assert len(limited) == 8
    assert max(r.in_flight for r in limited) == 8  # the first wave ran at full concurrency
    after = sorted((r for r in srv.requests if r.t_start > max(x.t_end for x in limited)), key=lambda r: r.t_start)
    assert len(after) == 40
    # Halved once (8 429s of one window), not eight times: 4 in flight until 4 successes grow it.
    assert max(r.in_flight for r in after[:8]) <= 4
    assert max(r.in_flight for r in after) <= 8
    assert stats["decreases"] == 1 and stats["rate_limited"] == 8 and stats["increases"] >= 1
    assert min(r.t_start for r in after) - min(x.t_end for x in limited) >= 0.2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", ["500", "503", "invalid_json", "truncated_json", "disconnect"])
def test_transient_faults_are_retried(srv: FaultServer, backend: str, fault: str) -> None:
    srv.script([fault, fault])
    with engine(srv, backend) as eng:
        (res,) = eng.chat_batch(reqs(1))
    assert res.ok and res.attempts == 3 and res.text == "echo: question q0 please"
    assert srv.count() == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeouts_are_retried_then_reported(srv: FaultServer, backend: str) -> None:
    srv.script([Fault("timeout", hang_s=30)])
    with engine(srv, backend, http={"timeout_s": 0.3, "max_retries": 2}) as eng:
        (res,) = eng.chat_batch(reqs(1))
        assert res.ok and res.attempts == 2 and srv.count() == 2
        srv.reset()
        srv.script([Fault("timeout", hang_s=30)] * 3)
        t0 = time.monotonic()
        (res,) = eng.chat_batch(reqs(1))
    assert not res.ok and res.attempts == 3 and srv.count() == 3
    assert "timed out after 0.3s" in res.error and "gave up after 3 attempts" in res.error
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_gives_up_after_max_retries_with_backoff(backend: str) -> None:
    with FaultServer(default_fault="503") as srv, engine(srv, backend, http={"max_retries": 4, "backoff_base_s": 0.05, "backoff_max_s": 0.08}) as eng:
        (res,) = eng.chat_batch(reqs(1))
        starts = [r.t_start for r in srv.requests]
    assert not res.ok and res.attempts == 5 and len(starts) == 5
    assert res.error.startswith("HTTP 503") and "gave up after 5 attempts" in res.error
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert max(gaps) < 0.08 + 0.5  # capped by backoff_max_s (plus call overhead)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("status", [400, 401, 403])
def test_client_errors_fail_fast(srv: FaultServer, backend: str, status: int) -> None:
    srv.script([status])
    with engine(srv, backend) as eng:
        (res,) = eng.chat_batch(reqs(1))
    assert not res.ok and res.attempts == 1 and srv.count() == 1
    assert f"HTTP {status}" in res.error and "not retried" in res.error


@pytest.mark.parametrize("backend", BACKENDS)
def test_cache_rerun_makes_no_calls(srv: FaultServer, backend: str, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    fields = {"cache_dir": str(cache_dir), "price_in_per_mtok": 1000.0, "price_out_per_mtok": 2000.0}
    with engine(srv, backend, **fields) as eng:
        first = eng.chat_batch(reqs(5))
    assert srv.count() == 5 and all(r.ok and not r.cached and r.cost_usd > 0 for r in first)
    files = sorted(cache_dir.glob("??/*.json"))
    assert len(files) == 5 and all(f.parent.name == f.stem[:2] for f in files)
    with engine(srv, backend, **fields) as eng:  # a new engine, as in a rerun
        again = eng.chat_batch(reqs(5))
    assert srv.count() == 5  # no new HTTP call
    assert all(r.cached and r.cost_usd == 0 and r.attempts == 0 for r in again)
    assert [r.text for r in again] == [r.text for r in first]
    assert [(r.tokens_in, r.tokens_out) for r in again] == [(r.tokens_in, r.tokens_out) for r in first]
    changed = reqs(1)[0].model_copy(update={"sampling": srv.engine_config(backend).sampling.model_copy(update={"temperature": 0.0})})
    with engine(srv, backend, **fields) as eng:
        (res,) = eng.chat_batch([changed])
    assert not res.cached and srv.count() == 6


def test_cache_is_keyed_by_endpoint(srv: FaultServer, tmp_path: Path) -> None:
    """Two servers with the same model name may serve different weights: no shared cache entries."""
    with FaultServer(responder=lambda messages, params: "from the second server") as other:
        with engine(srv, "openai", cache_dir=str(tmp_path)) as eng:
            first = eng.chat_batch(reqs(1))[0]
        with engine(other, "openai", cache_dir=str(tmp_path)) as eng:
            second = eng.chat_batch(reqs(1))[0]
        assert not second.cached and second.text == "from the second server" != first.text
        assert srv.count() == 1 and other.count() == 1


def test_errors_and_refusals_are_not_cached(srv: FaultServer, tmp_path: Path) -> None:
    srv.script(["400", "refusal"])
    with engine(srv, "openai", cache_dir=str(tmp_path)) as eng:
        assert not eng.chat_batch(reqs(1))[0].ok
        assert not eng.chat_batch(reqs(1))[0].ok
        assert eng.chat_batch(reqs(1))[0].ok
        assert eng.chat_batch(reqs(1))[0].cached
    assert srv.count() == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_tokens_and_cost(srv: FaultServer, backend: str) -> None:
    with engine(srv, backend, price_in_per_mtok=3.0, price_out_per_mtok=7.0) as eng:
        res = eng.chat_batch([ChatRequest.from_prompt("a", "one two three four five six")])[0]
    rec = srv.requests[0]
    assert res.tokens_in == 6 and res.tokens_out == 7  # words, as the server counts them
    assert res.cost_usd == pytest.approx((6 * 3.0 + 7 * 7.0) / 1e6)
    assert rec.status == 200 and res.latency_s > 0


def test_pricing_table() -> None:
    assert price_for("gpt-4-1106-preview") == (10.0, 30.0)
    assert price_for("gpt-4o-mini-2024-07-18") == price_for("gpt-4o-mini")
    assert price_for("gpt-4o-2024-08-06") == price_for("gpt-4o") != price_for("gpt-4o-mini")
    assert price_for("gpt-4.1") != price_for("gpt-4")
    assert price_for("models/gemini-1.5-flash-002") == price_for("gemini-1.5-flash")
    assert price_for("gemini-pro") is not None and price_for("gemini-2.5-pro") is not None
    assert price_for("my-local-model") is None
    assert call_cost((2.0, 4.0), 1_000_000, 500_000) == pytest.approx(4.0)
    assert is_local_url("http://127.0.0.1:8000/v1") and is_local_url("http://localhost") and not is_local_url("https://api.openai.com/v1")


@pytest.mark.parametrize("backend", BACKENDS)
def test_budget_guard_stops_calls(srv: FaultServer, backend: str) -> None:
    # At $1000 per 1M tokens a call reserves its worst case, (15 estimated + 512) tokens = $0.527,
    # and costs 9 tokens = $0.009; with a $0.55 cap the fourth call would risk passing it.
    budget = BudgetGuard(0.55)
    cfg = srv.engine_config(backend, price_in_per_mtok=1000.0, price_out_per_mtok=1000.0, http={"max_concurrency": 1})
    from mentalchat.engine.base import BACKENDS as registry

    eng = registry[backend](cfg, budget=budget)
    with eng:
        res = eng.chat_batch(reqs(8))
    ok = [r for r in res if r.ok]
    refused = [r for r in res if r.error == "budget exceeded"]
    assert len(ok) == 3 and len(refused) == 5
    assert srv.count() == 3
    assert budget.spent_usd == pytest.approx(sum(r.cost_usd for r in ok)) == pytest.approx(0.027)


def test_budget_from_config(srv: FaultServer) -> None:
    with engine(srv, "openai", price_in_per_mtok=1.0, price_out_per_mtok=1.0, http={"budget_usd": 0.0, "max_concurrency": 2}) as eng:
        res = eng.chat_batch(reqs(3))
        assert all(r.error == "budget exceeded" and r.attempts == 0 for r in res)
        assert eng.budget_snapshot()["refused"] >= 3
    assert srv.count() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_refusal_and_length(srv: FaultServer, backend: str) -> None:
    srv.script(["refusal"], match="q0")
    srv.script(["length"], match="q1")
    with engine(srv, backend) as eng:
        r0, r1, r2 = eng.chat_batch(reqs(3))
    assert not r0.ok and r0.attempts == 1 and "refused by the model" in r0.error
    assert r0.finish_reason == ("refusal" if backend == "openai" else "content_filter")
    assert r1.ok and r1.finish_reason == "length" and r1.text == "echo: question"
    assert r2.ok and r2.finish_reason == "stop"


def test_chat_batch_from_a_running_loop_and_threads(srv: FaultServer) -> None:
    eng = engine(srv, "openai")

    async def inside_loop() -> tuple[list, list]:
        blocking = eng.chat_batch(reqs(2, "a"))  # sync call from inside a running loop
        awaited = await eng.achat_batch(reqs(2, "b"))  # the non-blocking form (Ray async actors)
        return blocking, awaited

    blocking, awaited = asyncio.run(inside_loop())
    assert all(r.ok for r in blocking + awaited)
    out: dict[int, list] = {}

    def worker(i: int) -> None:
        out[i] = eng.chat_batch(reqs(3, f"t{i}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r.ok for i in range(4) for r in out[i]) and srv.count() == 4 + 12
    eng.close()


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({}) is None
    from email.utils import formatdate

    assert 3 <= parse_retry_after({"retry-after": formatdate(time.time() + 5, usegmt=True)}) <= 6


def test_scrub_patterns() -> None:
    assert "sk-abcdefghijklmnopqrstuv" not in scrub("Incorrect API key provided: sk-abcdefghijklmnopqrstuv.")
    assert "AIzaSyA1234567890abcdefghijk" not in scrub("key=AIzaSyA1234567890abcdefghijk")
    assert "tok123" not in scrub("Authorization: Bearer tok123")
    assert "custom-secret-value" not in scrub("got custom-secret-value", ["custom-secret-value"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_secrets_never_leak(backend: str, tmp_path: Path, monkeypatch, caplog, capfd) -> None:
    planted = "sk-PLANTED-" + "Zq9" * 10
    monkeypatch.setenv("MC_TEST_PLANTED_KEY", planted)
    caplog.set_level(logging.DEBUG)
    with FaultServer(api_key="the-right-key") as srv:
        cache_dir = tmp_path / "cache"
        with engine(srv, backend, api_key_env="MC_TEST_PLANTED_KEY", cache_dir=str(cache_dir), http={"timeout_s": 0.3}) as eng:
            assert planted not in repr(eng)
            bad_key = eng.chat_batch(reqs(2))  # 401: the server repeats the key it was sent
            srv.api_key = planted
            srv.script(["500", Fault("timeout", hang_s=10), "invalid_json", "disconnect", "400", "refusal"])
            mixed = eng.chat_batch(reqs(8, "m"))
        records = json.dumps([(r.headers, r.body) for r in srv.requests], default=str)
    assert all(not r.ok and "HTTP 401" in r.error and "not retried" in r.error for r in bad_key)
    assert any(r.ok for r in mixed) and any(not r.ok for r in mixed)
    dumped = json.dumps([r.model_dump() for r in bad_key + mixed])
    out, err = capfd.readouterr()
    cache_text = "".join(p.read_text() for p in cache_dir.rglob("*.json"))
    assert cache_text
    for where, text in {"results": dumped, "logs": caplog.text, "stdout": out, "stderr": err, "cache": cache_text, "server records": records}.items():
        assert planted not in text, f"the key leaked into {where}"
        assert planted[:8] not in text and planted[-6:] not in text, f"part of the key leaked into {where}"


def test_cluster_limiter_across_ray_tasks(ray_cluster) -> None:
    ray = ray_cluster

    def in_task(cfg_json: str, prefix: str) -> list[bool]:  # nested: shipped to the worker by value
        from mentalchat.engine import ChatRequest, EngineConfig, create_engine

        cfg = EngineConfig.model_validate_json(cfg_json)
        with create_engine(cfg) as eng:
            return [r.ok for r in eng.chat_batch([ChatRequest.from_prompt(f"{prefix}{i}", f"task {prefix}{i}") for i in range(8)])]

    with FaultServer(latency_s=0.15) as srv:
        cfg = srv.engine_config("openai", model=f"cluster-{time.time_ns()}", http={"max_concurrency": 3, "cluster_limiter": True})
        task = ray.remote(num_cpus=0.5)(in_task)
        a, b = ray.get([task.remote(cfg.model_dump_json(), "a"), task.remote(cfg.model_dump_json(), "b")], timeout=180)
        assert all(a) and all(b) and srv.count(status=200) == 16
        # Each task alone could run 3 at once; together they share the actor's limit of 3.
        assert srv.peak_in_flight <= 3
        assert {r.prompt.split()[-1][0] for r in srv.requests} == {"a", "b"}
    from mentalchat.engine.limiter import ClusterLimiter, LimiterSettings

    handle = ClusterLimiter(create_engine(cfg).limiter_name, LimiterSettings(max_concurrency=3))
    stats = ray.get(handle._handle.stats.remote())
    assert stats["acquired"] == 16 and stats["peak_in_flight"] == 3
    handle.kill()


def test_gemini_blocked_prompt_is_a_refusal_not_a_retry(srv: FaultServer) -> None:
    """A prompt Gemini blocks outright comes back with no candidates, only promptFeedback."""
    srv.script(["blocked"], match="q0")
    with engine(srv, "gemini") as eng:
        r0, r1 = eng.chat_batch(reqs(2))
    assert not r0.ok and r0.attempts == 1 and r0.finish_reason == "content_filter"
    assert "prompt blocked" in r0.error and "SAFETY" in r0.error
    assert srv.count(match="q0") == 1  # a block is an answer: retrying it would only pay again
    assert r1.ok


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("503", "http_5xx"),
        ("400", "http_4xx"),
        ("401", "http_4xx"),
        ("invalid_json", "bad_response"),
        ("refusal", "refused"),
        (Fault("rate_limit", retry_after_s=30.0), "rate_limited"),  # beyond 10 x backoff_max_s: not waited for
        (Fault("timeout", hang_s=30.0), "timeout"),
    ],
)
def test_failed_calls_carry_their_kind(srv: FaultServer, backend: str, fault, kind: str) -> None:
    srv.script([fault] * 4, match="q0")
    with engine(srv, backend, http={"timeout_s": 0.5, "max_retries": 1}) as eng:
        failed, fine = eng.chat_batch(reqs(2))
    assert failed.error is not None and failed.error_kind == kind, failed.error
    assert fine.ok and fine.error_kind is None


def test_budget_refusal_is_a_kind_not_a_string(srv: FaultServer) -> None:
    with engine(srv, "openai", price_in_per_mtok=1.0, price_out_per_mtok=1.0, http={"budget_usd": 0.0}) as eng:
        res = eng.chat_batch(reqs(2))
    assert [r.error_kind for r in res] == ["budget", "budget"] and srv.count() == 0


def test_one_estimate_and_price_for_every_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    from mentalchat.engine.config import EngineConfig
    from mentalchat.engine.pricing import SCHEMA_TOKENS, engine_price, estimate_tokens

    plain = ChatRequest.from_prompt("a", "x" * 400, system="y" * 40)
    assert estimate_tokens(plain) == 110 + 8
    structured = plain.model_copy(update={"json_schema": {"type": "object"}})
    assert estimate_tokens(structured) == estimate_tokens(plain) + SCHEMA_TOKENS
    # an API engine is priced at the endpoint it would call: base_url, else the provider's variable
    remote = EngineConfig(backend="openai", model="gpt-4o-mini")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert engine_price(remote) == price_for("gpt-4o-mini")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert engine_price(remote) == (0.0, 0.0)  # a local endpoint is free
    assert engine_price(EngineConfig(backend="vllm", model="m", price_in_per_mtok=2.0)) == (2.0, 0.0)


def test_create_engine_passes_the_budget(srv: FaultServer) -> None:
    guard = BudgetGuard(0.0)
    with create_engine(srv.engine_config("openai", price_in_per_mtok=1.0, price_out_per_mtok=1.0), budget=guard) as eng:
        res = eng.chat_batch(reqs(1))
    assert res[0].error_kind == "budget" and srv.count() == 0
