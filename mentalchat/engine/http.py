"""The shared call loop of the API backends (OpenAI-compatible endpoints, Gemini).

Why one loop: timeouts, retries, rate limits, caching, cost accounting and secret hygiene are the
same problem for every provider; backends only translate a :class:`ChatRequest` into their SDK's
call and an SDK exception into a :class:`CallError`.

Per request, :class:`HTTPEngine` does: cache lookup (a hit costs nothing and makes no call);
budget reservation; a limiter slot (AIMD concurrency, Retry-After pause, request/token buckets, see
:mod:`mentalchat.engine.limiter`); the call under ``HTTPOptions.timeout_s``; then either the result
(tokens, cost, latency, attempts; stored in the cache) or a retry. 429, 408, 5xx, timeouts,
connection errors and unreadable bodies are retried up to ``max_retries`` times with full-jitter
exponential backoff (``uniform(0, min(backoff_max_s, backoff_base_s * 2**n))``), or after the
server's Retry-After when it sent one. 400/401/403/404/422 fail at once. A batch never raises for
one request: failures come back as results with ``error`` set.

All engines of a process run their calls on one background event loop thread, which owns the SDK
clients and limiters. So :meth:`HTTPEngine.chat_batch` works from plain threads and from inside a
running event loop (a Ray async actor: prefer ``await engine.achat_batch(...)`` there, which does
not block the caller's loop).

Secrets: the API key is read from the environment variable named by ``api_key_env`` and kept on
the engine only; every error message is scrubbed (:func:`scrub`) before it reaches a result, a log
line or an exception, and the cache stores responses only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import hashlib
import logging
import math
import os
import random
import re
import threading
import time
import traceback
from collections.abc import Coroutine, Iterable
from typing import Any, ClassVar, TypeVar

from mentalchat.engine.base import Engine
from mentalchat.engine.cache import CachedResponse, ResponseCache
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.limiter import RAY_NAMESPACE, AsyncLimiter, ClusterLimiter, get_limiter, limiter_name
from mentalchat.engine.pricing import call_cost, is_local_url, resolve_price
from mentalchat.engine.types import ChatRequest, ChatResult, SamplingConfig, request_key
from mentalchat.errors import MentalchatError

__all__ = [
    "BudgetGuard",
    "CallError",
    "ClusterBudget",
    "HTTPEngine",
    "RawResponse",
    "background_loop",
    "parse_retry_after",
    "run_sync",
    "scrub",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

PLACEHOLDER_KEY = "no-key-local-endpoint"

# ------------------------------------------------------------------------------------------------
# The process-wide background loop


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="mentalchat-http-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()


_LOOP: _LoopThread | None = None
_LOOP_LOCK = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The event loop thread shared by every HTTP engine of this process (started on first use)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP.pid != os.getpid() or not _LOOP.thread.is_alive():
            _LOOP = _LoopThread()
        return _LOOP.loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and wait for it (from any thread but that loop's own)."""
    loop = background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("a blocking engine call was made from the engine loop itself; use `await engine.achat_batch(...)`")
    fut = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return fut.result()
    except BaseException:
        fut.cancel()  # e.g. KeyboardInterrupt in the caller: stop the calls too
        raise


async def run_on_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the background loop from any running loop without blocking it."""
    loop = background_loop()
    if asyncio.get_running_loop() is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


# ------------------------------------------------------------------------------------------------
# Secrets

_KEY_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{12,}"),  # OpenAI-style keys
    re.compile(r"AIza[0-9A-Za-z_\-]{20,}"),  # Google API keys
    re.compile(r"(?i)(bearer\s+)[^\s\"',}]+"),
    re.compile(r"(?i)((?:api[_-]?key|key|x-goog-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"),
]


def scrub(text: object, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and anything shaped like an API key replaced by ``***``."""
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
            # Providers sometimes echo a shortened key (first/last characters).
            if len(secret) >= 16:
                out = out.replace(secret[:8], "***").replace(secret[-6:], "***")
    for pat in _KEY_PATTERNS:
        out = pat.sub(lambda m: (m.group(1) if m.re.groups else "") + "***", out)
    return out


# ------------------------------------------------------------------------------------------------
# Budget


class BudgetGuard:
    """A dollar cap shared by every engine (and thread) holding it.

    Before each attempt the call's worst-case cost (estimated input tokens plus ``max_tokens``
    output) is reserved; a call is refused when spent + reserved + its estimate would pass the cap,
    so the cap is never exceeded by calls in flight. On completion the reservation is replaced by
    the actual cost (0 for failed calls). Refused requests get the error ``budget exceeded``.
    """

    def __init__(self, cap_usd: float) -> None:
        if cap_usd < 0:
            raise ValueError("budget cap must be >= 0")
        self.cap_usd = float(cap_usd)
        self._spent = 0.0
        self._reserved = 0.0
        self._refused = 0
        self._lock = threading.Lock()

    def try_reserve_now(self, usd: float) -> bool:
        with self._lock:
            if self._spent + self._reserved + usd > self.cap_usd + 1e-12:
                self._refused += 1
                return False
            self._reserved += usd
            return True

    def settle_now(self, reserved: float, actual: float) -> None:
        with self._lock:
            self._reserved = max(0.0, self._reserved - reserved)
            self._spent += actual

    async def reserve(self, usd: float) -> bool:
        return self.try_reserve_now(usd)

    async def settle(self, reserved: float, actual: float) -> None:
        self.settle_now(reserved, actual)

    async def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {"cap_usd": self.cap_usd, "spent_usd": self._spent, "reserved_usd": self._reserved, "refused": self._refused}

    @property
    def spent_usd(self) -> float:
        with self._lock:
            return self._spent

    def __getstate__(self) -> dict[str, Any]:  # a copy sent to another process would not be shared
        raise TypeError("BudgetGuard is process-local; use ClusterBudget across Ray workers")


class _BudgetActor:
    def __init__(self, cap_usd: float) -> None:
        self._guard = BudgetGuard(cap_usd)

    def reserve(self, usd: float) -> bool:
        return self._guard.try_reserve_now(usd)

    def settle(self, reserved: float, actual: float) -> None:
        self._guard.settle_now(reserved, actual)

    async def snapshot(self) -> dict[str, float]:
        return await self._guard.snapshot()


class ClusterBudget:
    """A :class:`BudgetGuard` shared by all Ray workers: a named detached actor (first cap wins)."""

    def __init__(self, name: str, cap_usd: float) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("ClusterBudget needs a running Ray cluster (ray.init)")
        self.name = name
        self._handle = (
            ray.remote(_BudgetActor)
            .options(name=name, namespace=RAY_NAMESPACE, get_if_exists=True, lifetime="detached", num_cpus=0, max_concurrency=1000)
            .remote(cap_usd)
        )

    async def reserve(self, usd: float) -> bool:
        return await self._handle.reserve.remote(usd)

    async def settle(self, reserved: float, actual: float) -> None:
        await self._handle.settle.remote(reserved, actual)

    async def snapshot(self) -> dict[str, float]:
        return await self._handle.snapshot.remote()

    def kill(self) -> None:
        import ray

        ray.kill(self._handle)


# ------------------------------------------------------------------------------------------------
# What backends return / raise


@dataclasses.dataclass
class RawResponse:
    """One successful HTTP exchange, in provider-neutral terms."""

    text: str | None
    finish_reason: str | None
    tokens_in: int | None = None
    tokens_out: int | None = None
    refusal: str | None = None  # the provider declined (safety / policy); text is then None


class CallError(MentalchatError):
    """A failed attempt, already classified and scrubbed by the backend."""

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool = False, retry_after_s: float | None = None, rate_limited: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.rate_limited = rate_limited

    def describe(self) -> str:
        return f"HTTP {self.status}: {self.message}" if self.status else self.message


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), else None."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(status: int, message: str, retry_after_s: float | None = None) -> CallError:
    """Classify an HTTP error status (429/5xx retried; other 4xx not)."""
    return CallError(
        message,
        status=status,
        retryable=status in RETRYABLE_STATUS or status >= 500,
        retry_after_s=retry_after_s,
        rate_limited=status == 429,
    )


def estimate_tokens(request: ChatRequest) -> int:
    """A rough prompt size (4 characters per token) used before the provider reports usage."""
    chars = sum(len(m.content) for m in request.messages)
    return math.ceil(chars / 4) + 4 * len(request.messages)


# ------------------------------------------------------------------------------------------------
# The engine


class HTTPEngine(Engine):
    """Base class of API backends; subclasses implement :meth:`_make_client`, :meth:`_call`,
    :meth:`_classify` and :meth:`_close_client`."""

    supports_json_schema: ClassVar[bool] = True
    base_url_env: ClassVar[str | None] = None

    def __init__(self, cfg: EngineConfig, *, budget: BudgetGuard | ClusterBudget | None = None) -> None:
        super().__init__(cfg)
        if not cfg.is_http:
            raise ValueError(f"{type(self).__name__} serves HTTP backends, not {cfg.backend!r}")
        env_url = os.environ.get(self.base_url_env) if self.base_url_env else None
        self.base_url: str | None = cfg.base_url or env_url or None
        key_env = cfg.api_key_env
        key = os.environ.get(key_env) if key_env else None
        if not key:
            if not is_local_url(self.base_url):
                raise ValueError(
                    f"engine {cfg.label!r} ({cfg.backend}): the API key variable {key_env!r} is not set "
                    f"(set it, or point base_url at a local endpoint)"
                )
            key = PLACEHOLDER_KEY
        self.__key = key
        self._secrets = [key] if key != PLACEHOLDER_KEY else []
        self.price = resolve_price(cfg, self.base_url)
        self.cache = ResponseCache(cfg.cache_dir) if cfg.cache_dir else None
        self._budget = budget
        self._client: Any = None
        self._limiter: AsyncLimiter | ClusterLimiter | None = None
        self._ready_lock: asyncio.Lock | None = None
        self._closed = False

    # ---- for subclasses ---------------------------------------------------------------------

    @property
    def _api_key(self) -> str:
        return self.__key

    def _make_client(self) -> Any:
        raise NotImplementedError

    async def _call(self, client: Any, request: ChatRequest, sampling: SamplingConfig) -> RawResponse:
        raise NotImplementedError

    def _classify(self, exc: BaseException) -> CallError:
        raise NotImplementedError

    async def _close_client(self, client: Any) -> None:
        return None

    def scrub(self, text: object) -> str:
        return scrub(text, self._secrets)

    # ---- public -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, model={self.cfg.model!r}, base_url={self.base_url!r})"

    @property
    def limiter_name(self) -> str:
        return limiter_name(self.provider, self.base_url, self.cfg.model)

    def chat_batch(self, requests: list[ChatRequest]) -> list[ChatResult]:
        """Answer every request concurrently (under the limiter); one result per request, in order."""
        return run_sync(self._run_batch(list(requests)))

    async def achat_batch(self, requests: list[ChatRequest]) -> list[ChatResult]:
        """The same from inside a running event loop, without blocking it."""
        return await run_on_loop(self._run_batch(list(requests)))

    def limiter_stats(self) -> dict[str, Any]:
        """Counters of this engine's limiter (limit, peak in flight, 429s, limit history)."""

        async def get() -> dict[str, Any]:
            await self._ensure_ready()
            assert self._limiter is not None
            return await self._limiter.stats()

        return run_sync(get())

    def budget_snapshot(self) -> dict[str, float] | None:
        if self._budget is None and self.cfg.http.budget_usd is None:
            return None

        async def get() -> dict[str, float] | None:
            await self._ensure_ready()
            return await self._budget.snapshot() if self._budget is not None else None

        return run_sync(get())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            run_sync(self._close_client(client))

    # ---- the loop -----------------------------------------------------------------------------

    async def _ensure_ready(self) -> None:
        if self._client is not None and self._limiter is not None:
            return
        if self._ready_lock is None:
            self._ready_lock = asyncio.Lock()
        async with self._ready_lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            if self._limiter is None:
                if self.cfg.http.cluster_limiter:
                    self._limiter = await asyncio.to_thread(get_limiter, self.limiter_name, self.cfg.http)
                else:
                    self._limiter = get_limiter(self.limiter_name, self.cfg.http)
            if self._budget is None and self.cfg.http.budget_usd is not None:
                cap = self.cfg.http.budget_usd
                if self.cfg.http.cluster_limiter:
                    # One counter for every worker running this engine config (and cap).
                    ident = f"{self.provider}|{self.base_url}|{self.cfg.label}|{cap!r}"
                    name = "mentalchat-budget-" + hashlib.sha256(ident.encode()).hexdigest()[:12]
                    self._budget = await asyncio.to_thread(ClusterBudget, name, cap)
                else:
                    self._budget = BudgetGuard(cap)
            if self._client is None:
                self._client = self._make_client()

    async def _run_batch(self, requests: list[ChatRequest]) -> list[ChatResult]:
        try:
            await self._ensure_ready()
        except Exception as exc:  # noqa: BLE001 - one clear error per request
            msg = self.scrub(f"engine setup failed: {type(exc).__name__}: {exc}")
            return [self._error_result(r, msg, attempts=0) for r in requests]
        return list(await asyncio.gather(*(self._one_safe(r) for r in requests)))

    async def _one_safe(self, request: ChatRequest) -> ChatResult:
        try:
            return await self._one(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must not sink the batch
            log.error("unexpected failure for request %s:\n%s", request.id, self.scrub(traceback.format_exc()))
            return self._error_result(request, self.scrub(f"internal error: {type(exc).__name__}: {exc}"), attempts=0)

    def _error_result(self, request: ChatRequest, message: str, *, attempts: int, latency_s: float = 0.0) -> ChatResult:
        return ChatResult(
            id=request.id,
            text=None,
            finish_reason="error",
            provider=self.provider,
            model=self.cfg.label,
            attempts=attempts,
            latency_s=latency_s,
            error=message,
            metadata=dict(request.metadata),
        )

    async def _one(self, request: ChatRequest) -> ChatResult:
        sampling = self.sampling_for(request)
        opts = self.cfg.http
        key = (
            request_key(self.provider, self.cfg.model, request, sampling, endpoint=self.base_url)
            if self.cache is not None
            else None
        )
        if key is not None and self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get, key)
            if hit is not None:
                return ChatResult(
                    id=request.id,
                    text=hit.text,
                    finish_reason=hit.finish_reason,
                    provider=self.provider,
                    model=self.cfg.label,
                    tokens_in=hit.tokens_in,
                    tokens_out=hit.tokens_out,
                    cost_usd=0.0,
                    latency_s=0.0,
                    attempts=0,
                    cached=True,
                    metadata=dict(request.metadata),
                )
        assert self._limiter is not None
        est_in = estimate_tokens(request)
        est_out = sampling.max_tokens
        attempts = 0
        max_attempts = opts.max_retries + 1
        while True:
            reserved = 0.0
            actual_cost = 0.0
            ticket = await self._limiter.acquire(est_in + est_out)
            # Reserve only once admitted, so queued requests hold no budget.
            if self._budget is not None:
                reserved = call_cost(self.price, est_in, est_out)
                try:
                    admitted = await self._budget.reserve(reserved)
                except BaseException:
                    await self._limiter.release(ticket, "error", None, 0)
                    raise
                if not admitted:
                    await self._limiter.release(ticket, "error", None, 0)
                    return self._error_result(request, "budget exceeded", attempts=attempts)
            try:
                attempts += 1
                t0 = time.monotonic()
                err: CallError | None = None
                raw: RawResponse | None = None
                try:
                    raw = await asyncio.wait_for(self._call(self._client, request, sampling), timeout=opts.timeout_s)
                except TimeoutError:
                    err = CallError(f"timed out after {opts.timeout_s:g}s", retryable=True)
                except CallError as exc:
                    err = exc
                except asyncio.CancelledError:
                    await self._limiter.release(ticket, "error", None, 0)
                    raise
                except Exception as exc:  # noqa: BLE001 - classified by the backend
                    err = self._classify(exc)
                latency = time.monotonic() - t0
                if raw is not None:
                    t_in = raw.tokens_in if raw.tokens_in is not None else est_in
                    t_out = raw.tokens_out if raw.tokens_out is not None else math.ceil(len(raw.text or "") / 4)
                    actual_cost = call_cost(self.price, t_in, t_out)
                    await self._limiter.release(ticket, "ok", None, t_in + t_out)
                else:
                    assert err is not None
                    outcome = "rate_limited" if err.rate_limited else "error"
                    await self._limiter.release(ticket, outcome, err.retry_after_s, 0)
            finally:
                if self._budget is not None:
                    await self._budget.settle(reserved, actual_cost)

            if raw is not None:
                return await self._success(request, key, raw, t_in, t_out, actual_cost, latency, attempts)

            assert err is not None
            message = self.scrub(err.describe())
            retry_after = err.retry_after_s
            too_long = retry_after is not None and retry_after > 10 * opts.backoff_max_s
            if not err.retryable or too_long:
                why = "not retried" if not err.retryable else f"server asks to wait {retry_after:g}s, beyond 10 x backoff_max_s"
                return self._error_result(request, f"{message} ({why})", attempts=attempts, latency_s=latency)
            if attempts >= max_attempts:
                return self._error_result(
                    request, f"{message} (gave up after {attempts} attempts)", attempts=attempts, latency_s=latency
                )
            if retry_after is not None:
                delay = retry_after * (1.0 + random.uniform(0.0, 0.1))
            else:
                delay = random.uniform(0.0, min(opts.backoff_max_s, opts.backoff_base_s * 2 ** (attempts - 1)))
            log.info(
                "%s %s: attempt %d/%d failed (%s); retrying in %.2fs",
                self.provider, request.id, attempts, max_attempts, message, delay,
            )
            await asyncio.sleep(delay)

    async def _success(
        self,
        request: ChatRequest,
        key: str | None,
        raw: RawResponse,
        t_in: int,
        t_out: int,
        cost: float,
        latency: float,
        attempts: int,
    ) -> ChatResult:
        error = None
        finish = raw.finish_reason
        if raw.refusal is not None and raw.text is None:
            error = self.scrub(f"refused by the model: {raw.refusal}" if raw.refusal else "refused by the model")
        elif raw.text is None:
            error = f"empty response (finish_reason={finish})"
        result = ChatResult(
            id=request.id,
            text=raw.text if error is None else None,
            finish_reason=finish,
            provider=self.provider,
            model=self.cfg.label,
            tokens_in=t_in,
            tokens_out=t_out,
            cost_usd=cost,
            latency_s=latency,
            attempts=attempts,
            error=error,
            metadata=dict(request.metadata),
        )
        if error is None and key is not None and self.cache is not None and raw.text is not None:
            await asyncio.to_thread(self.cache.put, key, CachedResponse(raw.text, finish, t_in, t_out))
        return result
