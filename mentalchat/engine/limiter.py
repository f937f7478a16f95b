"""Adaptive concurrency and rate limiting for API calls, in-process or cluster-wide.

Why: providers enforce requests-per-minute, tokens-per-minute and concurrency limits that we cannot
see until we hit them. The limiter keeps a permitted concurrency that behaves like TCP congestion
control (AIMD): a 429 halves it (at most once per "window": a 429 from a call admitted before the
last decrease does not halve again), never below ``min_concurrency``; each run of successes as long
as the current limit grows it by one, up to ``max_concurrency``. A ``Retry-After`` pauses every new
call of the limiter until then. Optional token buckets keep requests/minute and tokens/minute under
the configured values (the tokens of a call are estimated up front and corrected on release).

:class:`AsyncLimiter` lives in one event loop. :class:`ClusterLimiter` has the same async interface
and forwards to a named Ray actor (one per provider endpoint and model, ``get_if_exists=True``, on
the head node), holding an :class:`AsyncLimiter`, so every Ray worker calling the same provider
shares one set of limits. Waiters are admitted in FIFO order. Slots are leases: a caller that dies without releasing
gives its slot back after ``lease_s``. Both hand out slots as async context managers
(:meth:`Slots.slot`), so an acquire is always paired with one release.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

from mentalchat.engine.config import HTTPOptions
from mentalchat.engine.token_bucket import TokenBucket

__all__ = [
    "AsyncLimiter",
    "ClusterLimiter",
    "Limiter",
    "LimiterSettings",
    "Outcome",
    "SlotReport",
    "Slots",
    "get_limiter",
    "reset_limiters",
]

log = logging.getLogger(__name__)

Outcome = Literal["ok", "rate_limited", "error"]

RAY_NAMESPACE = "mentalchat"


@dataclasses.dataclass(frozen=True)
class LimiterSettings:
    max_concurrency: int = 16
    min_concurrency: int = 1
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_s: float = 0.25  # bucket size as seconds of the rate (at least one request/call)
    lease_s: float = 600.0

    @classmethod
    def from_options(cls, opts: HTTPOptions) -> LimiterSettings:
        return cls(
            max_concurrency=opts.max_concurrency,
            min_concurrency=min(opts.min_concurrency, opts.max_concurrency),
            requests_per_minute=opts.requests_per_minute,
            tokens_per_minute=opts.tokens_per_minute,
            lease_s=opts.timeout_s + 60.0,
        )


class Limiter(Protocol):
    """What the HTTP call loop needs (both implementations provide it; ``slot`` comes from :class:`Slots`)."""

    async def acquire(self, tokens: int = 0) -> int: ...

    async def release(
        self, ticket: int, outcome: Outcome = "ok", retry_after_s: float | None = None, tokens_used: int | None = None
    ) -> None: ...

    async def stats(self) -> dict[str, Any]: ...

    def slot(self, tokens: int = 0) -> contextlib.AbstractAsyncContextManager[SlotReport]: ...


@dataclasses.dataclass
class SlotReport:
    """How a call went, filled in by the caller inside :meth:`Slots.slot` (read when the slot is returned)."""

    outcome: Outcome = "ok"
    retry_after_s: float | None = None
    tokens_used: int | None = None


class Slots:
    """``slot()`` for any limiter with ``acquire``/``release``: one context manager pairs them."""

    async def acquire(self, tokens: int = 0) -> int:
        raise NotImplementedError

    async def release(
        self, ticket: int, outcome: Outcome = "ok", retry_after_s: float | None = None, tokens_used: int | None = None
    ) -> None:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[SlotReport]:
        """``async with limiter.slot(n) as s: ...; s.outcome = "rate_limited"`` (default ok, error on raise).

        The slot goes back on every way out, cancellation included, with what the caller reported.
        """
        ticket = await self.acquire(tokens)
        report = SlotReport()
        try:
            yield report
        except BaseException:
            if report.outcome == "ok":
                report.outcome = "error"
            raise
        finally:
            await self.release(ticket, report.outcome, report.retry_after_s, report.tokens_used)


@dataclasses.dataclass
class _Ticket:
    epoch: int
    deadline: float
    tokens: int


class AsyncLimiter(Slots):
    """AIMD concurrency + Retry-After pause + request/token buckets, for one event loop."""

    def __init__(self, settings: LimiterSettings | None = None, **kw: Any) -> None:
        self._settings = settings or LimiterSettings(**kw)
        self.limit = self._settings.max_concurrency
        self._tickets: dict[int, _Ticket] = {}
        self._next_ticket = 1
        self._epoch = 0
        self._successes = 0
        self._pause_until = 0.0
        self._req_bucket: TokenBucket | None = None
        self._tok_bucket: TokenBucket | None = None
        self._make_buckets()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._freed: asyncio.Event | None = None
        self._t0 = time.monotonic()
        self._stats = {"acquired": 0, "rate_limited": 0, "decreases": 0, "increases": 0, "expired": 0, "peak_in_flight": 0}
        self._history: list[tuple[float, int]] = [(0.0, self.limit)]

    @property
    def settings(self) -> LimiterSettings:
        return self._settings

    def _make_buckets(self) -> None:
        s = self._settings
        self._req_bucket = None
        self._tok_bucket = None
        if s.requests_per_minute:
            rate = s.requests_per_minute / 60.0
            self._req_bucket = TokenBucket(rate, rate * s.burst_s)
        if s.tokens_per_minute:
            rate = s.tokens_per_minute / 60.0
            self._tok_bucket = TokenBucket(rate, rate * s.burst_s)

    def apply_settings(self, settings: LimiterSettings) -> None:
        """Adopt new settings (the last engine created for an endpoint wins); state is kept."""
        if settings == self._settings:
            return
        old = self._settings
        self._settings = settings
        if (old.requests_per_minute, old.tokens_per_minute, old.burst_s) != (
            settings.requests_per_minute,
            settings.tokens_per_minute,
            settings.burst_s,
        ):
            self._make_buckets()
        limit = settings.max_concurrency if self.limit >= old.max_concurrency else self.limit
        self.limit = max(settings.min_concurrency, min(limit, settings.max_concurrency))
        self._record_limit()
        if self._freed is not None:
            self._freed.set()

    async def configure(self, settings: LimiterSettings) -> None:
        self.apply_settings(settings)

    def _prims(self) -> tuple[asyncio.Lock, asyncio.Event]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None or self._freed is None:
            self._loop = loop
            self._lock = asyncio.Lock()
            self._freed = asyncio.Event()
        return self._lock, self._freed

    def _record_limit(self) -> None:
        self._history.append((round(time.monotonic() - self._t0, 4), self.limit))
        if len(self._history) > 1000:
            del self._history[1:500]

    def _expire(self, now: float) -> float | None:
        """Free leases past their deadline; return the next deadline (None if no slot is held)."""
        nxt = None
        for tid, t in list(self._tickets.items()):
            if t.deadline <= now:
                del self._tickets[tid]
                self._stats["expired"] += 1
                log.warning("limiter: a call slot was never released; reclaimed after %.0fs", self._settings.lease_s)
            elif nxt is None or t.deadline < nxt:
                nxt = t.deadline
        return nxt

    async def acquire(self, tokens: int = 0) -> int:
        """Wait for a slot (FIFO): no pause, in-flight below the limit, bucket capacity. Returns a ticket."""
        lock, freed = self._prims()
        async with lock:
            while True:
                now = time.monotonic()
                next_deadline = self._expire(now)
                if now < self._pause_until:
                    await asyncio.sleep(self._pause_until - now)
                    continue
                if len(self._tickets) >= self.limit:
                    freed.clear()
                    wait = 1.0 if next_deadline is None else max(0.0, min(1.0, next_deadline - now))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(freed.wait(), timeout=wait)
                    continue
                wait = 0.0
                if self._req_bucket is not None:
                    wait = max(wait, self._req_bucket.wait_s(1, now))
                if self._tok_bucket is not None and tokens > 0:
                    wait = max(wait, self._tok_bucket.wait_s(tokens, now))
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                if self._req_bucket is not None:
                    self._req_bucket.take(1)
                if self._tok_bucket is not None and tokens > 0:
                    self._tok_bucket.take(tokens)
                ticket = self._next_ticket
                self._next_ticket += 1
                self._tickets[ticket] = _Ticket(self._epoch, now + self._settings.lease_s, tokens)
                self._stats["acquired"] += 1
                self._stats["peak_in_flight"] = max(self._stats["peak_in_flight"], len(self._tickets))
                return ticket

    async def release(
        self, ticket: int, outcome: Outcome = "ok", retry_after_s: float | None = None, tokens_used: int | None = None
    ) -> None:
        """Return a slot and report how the call went (drives AIMD, pauses and token accounting)."""
        t = self._tickets.pop(ticket, None)
        now = time.monotonic()
        if retry_after_s is not None and retry_after_s > 0:
            self._pause_until = max(self._pause_until, now + retry_after_s)
        if t is not None:
            if self._tok_bucket is not None and tokens_used is not None:
                delta = t.tokens - tokens_used
                if delta > 0:
                    self._tok_bucket.give(delta)
                elif delta < 0:
                    self._tok_bucket.take(-delta)
            if outcome == "rate_limited":
                self._stats["rate_limited"] += 1
                if t.epoch == self._epoch:
                    new = max(self._settings.min_concurrency, self.limit // 2)
                    self._epoch += 1
                    self._successes = 0
                    if new != self.limit:
                        self.limit = new
                        self._stats["decreases"] += 1
                        self._record_limit()
            elif outcome == "ok":
                self._successes += 1
                if self._successes >= self.limit and self.limit < self._settings.max_concurrency:
                    self.limit += 1
                    self._successes = 0
                    self._stats["increases"] += 1
                    self._record_limit()
        if self._freed is not None:
            self._freed.set()

    async def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            **self._stats,
            "limit": self.limit,
            "in_flight": len(self._tickets),
            "paused_for_s": max(0.0, self._pause_until - now),
            "limit_history": list(self._history),
        }


# ------------------------------------------------------------------------------------------------
# Cluster-wide: a named Ray actor per endpoint


class _LimiterActor:
    """Holds one AsyncLimiter; an async actor, so waiting callers don't block each other."""

    def __init__(self, settings: LimiterSettings) -> None:
        self._lim = AsyncLimiter(settings)

    async def configure(self, settings: LimiterSettings) -> None:
        await self._lim.configure(settings)

    async def acquire(self, tokens: int = 0) -> int:
        return await self._lim.acquire(tokens)

    async def release(
        self, ticket: int, outcome: Outcome = "ok", retry_after_s: float | None = None, tokens_used: int | None = None
    ) -> None:
        await self._lim.release(ticket, outcome, retry_after_s, tokens_used)

    async def stats(self) -> dict[str, Any]:
        return await self._lim.stats()


class ClusterLimiter(Slots):
    """Same interface as :class:`AsyncLimiter`, backed by a named detached Ray actor.

    Detached so that it outlives the worker that happened to create it (Ray Data scales actor
    pools up and down); it lives in the ``mentalchat`` namespace until the cluster stops or
    :meth:`kill` is called. The newest settings passed for a name are applied. It is placed on the
    head node: created with Ray's default placement it landed on the node of the first worker that
    asked, and when that worker node died every later call of the sweep failed with
    ``ActorDiedError`` (seen in ``tests/test_multinode.py``); the head outlives every worker node.
    """

    def __init__(self, name: str, settings: LimiterSettings) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("HTTPOptions.cluster_limiter needs a running Ray cluster (ray.init)")
        self.name = name
        actor_cls = ray.remote(_LimiterActor)
        self._handle = actor_cls.options(
            name=name,
            namespace=RAY_NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            max_concurrency=100_000,
            num_cpus=0,
            scheduling_strategy=_on_head_node(),
        ).remote(settings)
        ray.get(self._handle.configure.remote(settings))

    async def acquire(self, tokens: int = 0) -> int:
        return await self._handle.acquire.remote(tokens)

    async def release(
        self, ticket: int, outcome: Outcome = "ok", retry_after_s: float | None = None, tokens_used: int | None = None
    ) -> None:
        await self._handle.release.remote(ticket, outcome, retry_after_s, tokens_used)

    async def stats(self) -> dict[str, Any]:
        return await self._handle.stats.remote()

    def kill(self) -> None:
        import ray

        ray.kill(self._handle)


def _on_head_node() -> Any:
    """An affinity to the head node (where a worker node's death cannot take the actor along).

    Hard: a soft affinity was measured to fall back to the creating worker's node now and then
    (on a freshly started cluster). The actor asks for no resources, so the live head can always
    host it; a cluster whose head is not found gets Ray's default placement.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head = next((n["NodeID"] for n in ray.nodes()
                 if n.get("Alive") and "node:__internal_head__" in n.get("Resources", {})), None)
    return NodeAffinitySchedulingStrategy(head, soft=False) if head else "DEFAULT"


# ------------------------------------------------------------------------------------------------
# Registry: one limiter per endpoint and model in a process

_LOCAL: dict[str, AsyncLimiter] = {}


def limiter_name(provider: str, base_url: str | None, model: str) -> str:
    """Stable name for the limits of one endpoint + model (providers limit per model)."""
    digest = hashlib.sha256(f"{provider}|{base_url or ''}|{model}".encode()).hexdigest()[:12]
    return f"mentalchat-limiter-{provider}-{digest}"


def get_limiter(name: str, opts: HTTPOptions) -> AsyncLimiter | ClusterLimiter:
    """The process-wide limiter for ``name`` (or a handle on the cluster-wide actor)."""
    settings = LimiterSettings.from_options(opts)
    if opts.cluster_limiter:
        return ClusterLimiter(name, settings)
    lim = _LOCAL.get(name)
    if lim is None:
        lim = _LOCAL[name] = AsyncLimiter(settings)
    else:
        lim.apply_settings(settings)
    return lim


def reset_limiters() -> None:
    """Forget every in-process limiter (tests use it to start from a clean state)."""
    _LOCAL.clear()
