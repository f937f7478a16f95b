"""The limiter: AIMD concurrency, Retry-After pauses, request/token buckets, leases, cluster actor."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from mentalchat.engine.config import HTTPOptions
from mentalchat.engine.limiter import AsyncLimiter, ClusterLimiter, LimiterSettings, get_limiter, reset_limiters


def run(coro):
    return asyncio.run(coro)


def test_aimd_halves_once_per_window_and_grows_back() -> None:
    async def main() -> None:
        lim = AsyncLimiter(max_concurrency=8, min_concurrency=2)
        tickets = [await lim.acquire() for _ in range(8)]
        # Eight calls admitted under the same limit all hit 429: one decrease, not three.
        for t in tickets:
            await lim.release(t, "rate_limited")
        assert lim.limit == 4
        t = await lim.acquire()
        await lim.release(t, "rate_limited")  # a call admitted after the decrease halves again
        assert lim.limit == 2
        t = await lim.acquire()
        await lim.release(t, "rate_limited")
        assert lim.limit == 2  # floor: min_concurrency
        for _ in range(2 + 3 + 4):  # a run of `limit` successes adds one each time
            t = await lim.acquire()
            await lim.release(t, "ok")
        assert lim.limit == 5
        for _ in range(200):
            t = await lim.acquire()
            await lim.release(t, "ok")
        assert lim.limit == 8  # ceiling: max_concurrency
        stats = await lim.stats()
        assert stats["decreases"] == 2 and stats["rate_limited"] == 10 and stats["limit_history"][0][1] == 8

    run(main())


def test_concurrency_never_exceeds_limit() -> None:
    async def main() -> int:
        lim = AsyncLimiter(max_concurrency=3)
        active = peak = 0

        async def call() -> None:
            nonlocal active, peak
            async with lim.slot():
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.01)
                active -= 1

        await asyncio.gather(*(call() for _ in range(30)))
        assert (await lim.stats())["in_flight"] == 0
        return peak

    assert run(main()) == 3


def test_retry_after_pauses_every_new_call() -> None:
    async def main() -> None:
        lim = AsyncLimiter(max_concurrency=4)
        t = await lim.acquire()
        t0 = time.monotonic()
        await lim.release(t, "rate_limited", retry_after_s=0.3)
        assert lim.limit == 2
        await asyncio.gather(*(lim.acquire() for _ in range(2)))
        assert time.monotonic() - t0 >= 0.3

    run(main())


def test_requests_per_minute_bucket() -> None:
    async def main() -> float:
        lim = AsyncLimiter(max_concurrency=100, requests_per_minute=600)  # 10/s, bucket of 2.5 -> 2
        t0 = time.monotonic()
        for _ in range(12):
            await lim.release(await lim.acquire(), "ok")
        return time.monotonic() - t0

    elapsed = run(main())
    assert 0.9 <= elapsed <= 2.0  # 12 calls at 10/s after a burst of 2


def test_tokens_per_minute_bucket_and_correction() -> None:
    async def main() -> tuple[float, float]:
        lim = AsyncLimiter(max_concurrency=100, tokens_per_minute=6000, burst_s=1.0)  # 100 tokens/s
        t0 = time.monotonic()
        t = await lim.acquire(100)
        await lim.release(t, "ok", tokens_used=100)
        t = await lim.acquire(100)  # the bucket (100) is empty: ~1 s
        first = time.monotonic() - t0
        await lim.release(t, "ok", tokens_used=0)  # estimate refunded
        t1 = time.monotonic()
        await lim.release(await lim.acquire(100), "ok", tokens_used=100)  # refund: no wait
        return first, time.monotonic() - t1

    first, second = run(main())
    assert 0.9 <= first <= 1.6
    assert second < 0.2


def test_fifo_admission() -> None:
    async def main() -> list[int]:
        lim = AsyncLimiter(max_concurrency=1)
        order: list[int] = []
        held = await lim.acquire()

        async def waiter(i: int) -> None:
            t = await lim.acquire()
            order.append(i)
            await asyncio.sleep(0.005)
            await lim.release(t)

        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(waiter(i)))
            await asyncio.sleep(0.005)
        await lim.release(held)
        await asyncio.gather(*tasks)
        return order

    assert run(main()) == [0, 1, 2, 3, 4]


def test_lost_slot_is_reclaimed_after_lease() -> None:
    async def main() -> float:
        lim = AsyncLimiter(max_concurrency=1, lease_s=0.3)
        await lim.acquire()  # never released (a crashed worker)
        t0 = time.monotonic()
        await lim.acquire()
        assert (await lim.stats())["expired"] == 1
        return time.monotonic() - t0

    assert 0.25 <= run(main()) <= 1.5


def test_registry_shares_one_limiter_per_name() -> None:
    reset_limiters()
    a = get_limiter("x", HTTPOptions(max_concurrency=4))
    b = get_limiter("x", HTTPOptions(max_concurrency=6))
    assert a is b and a.settings.max_concurrency == 6 and a.limit == 6
    assert get_limiter("y", HTTPOptions()) is not a
    reset_limiters()


def test_settings_from_options() -> None:
    s = LimiterSettings.from_options(HTTPOptions(max_concurrency=3, min_concurrency=5, requests_per_minute=60, timeout_s=10))
    assert (s.max_concurrency, s.min_concurrency, s.requests_per_minute, s.lease_s) == (3, 3, 60, 70.0)


# ---- cluster-wide ---------------------------------------------------------------------------


def test_cluster_limiter_shared_by_two_ray_tasks(ray_cluster) -> None:
    ray = ray_cluster

    def _cluster_worker(name: str, n: int, hold_s: float, report_429: bool) -> list[tuple[float, float]]:
        """Acquire/hold/release n times through the named actor; return (start, end) of each hold."""
        import asyncio
        import time

        from mentalchat.engine.limiter import ClusterLimiter, LimiterSettings

        lim = ClusterLimiter(name, LimiterSettings(max_concurrency=2, min_concurrency=1))

        async def main() -> list[tuple[float, float]]:
            spans = []

            async def one(i: int) -> None:
                t = await lim.acquire()
                start = time.time()
                await asyncio.sleep(hold_s)
                end = time.time()
                spans.append((start, end))
                outcome = "rate_limited" if report_429 and i == 0 else "ok"
                await lim.release(t, outcome, 0.5 if outcome == "rate_limited" else None)

            await asyncio.gather(*(one(i) for i in range(n)))
            return spans

        return asyncio.run(main())

    name = f"test-limiter-{time.time_ns()}"
    remote = ray.remote(num_cpus=0.5)(_cluster_worker)
    spans_a, spans_b = ray.get([remote.remote(name, 6, 0.1, False), remote.remote(name, 6, 0.1, False)], timeout=120)
    spans = spans_a + spans_b
    # Both tasks together never held more than the shared limit of 2.
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    active = peak = 0
    for _, d in events:
        active += d
        peak = max(peak, active)
    assert peak == 2
    handle = ClusterLimiter(name, LimiterSettings(max_concurrency=2, min_concurrency=1))
    stats = ray.get(handle._handle.stats.remote())
    assert stats["acquired"] == 12 and stats["in_flight"] == 0 and stats["peak_in_flight"] == 2

    # A 429 seen by one task pauses the other and halves the shared limit.
    spans_a, spans_b = ray.get([remote.remote(name, 3, 0.05, True), remote.remote(name, 3, 0.05, False)], timeout=120)
    stats = ray.get(handle._handle.stats.remote())
    assert stats["rate_limited"] == 1 and stats["decreases"] == 1
    handle.kill()


def test_cluster_limiter_slots_pair_acquire_with_release(ray_cluster) -> None:
    """``slot()`` on the cluster limiter: held inside, returned on every way out, outcome reported."""
    name = f"test-limiter-slot-{time.time_ns()}"
    lim = ClusterLimiter(name, LimiterSettings(max_concurrency=4, min_concurrency=1))

    async def main() -> list[int]:
        seen = []
        async with lim.slot() as s:
            seen.append((await lim.stats())["in_flight"])
            s.outcome = "rate_limited"
        seen.append((await lim.stats())["in_flight"])
        with pytest.raises(KeyError):
            async with lim.slot():
                seen.append((await lim.stats())["in_flight"])
                raise KeyError("boom")
        seen.append((await lim.stats())["in_flight"])
        return seen

    try:
        assert asyncio.run(main()) == [1, 0, 1, 0]
        stats = asyncio.run(lim.stats())
        assert stats["acquired"] == 2 and stats["rate_limited"] == 1 and stats["limit"] == 2
    finally:
        lim.kill()


def test_cluster_limiter_without_ray_is_a_clear_error() -> None:
    # In a fresh interpreter: this session's Ray cluster may already be running.
    code = (
        "from mentalchat.engine import ChatRequest\n"
        "from mentalchat.testing.fault_server import FaultServer\n"
        "from mentalchat.engine import create_engine\n"
        "with FaultServer() as srv:\n"
        "    eng = create_engine(srv.engine_config('openai', http={'cluster_limiter': True}))\n"
        "    (r,) = eng.chat_batch([ChatRequest.from_prompt('a', 'hi')])\n"
        "    print('ERROR=' + str(r.error), 'CALLS=' + str(srv.count()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERROR=engine setup failed: RuntimeError: HTTPOptions.cluster_limiter needs a running Ray cluster" in out.stdout
    assert "CALLS=0" in out.stdout
