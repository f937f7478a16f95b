"""The shared call loop of the API backends (OpenAI-compatible endpoints, Gemini).

Why one loop: timeouts, retries, rate limits, caching, cost accounting and secret hygiene are the
same problem for every provider; backends only translate a :class:`ChatRequest` into their SDK's
call and an SDK exception into a :class:`~mentalchat.engine.retry.CallError`.

Per request, :class:`HTTPEngine` does: cache lookup (a hit costs nothing and makes no call); a
limiter slot (AIMD concurrency, Retry-After pause, request/token buckets:
:mod:`mentalchat.engine.limiter`); a budget reservation (:mod:`mentalchat.engine.budget`); the
call under ``HTTPOptions.timeout_s``; then either the result (tokens, cost, latency, attempts;
stored in the cache) or what :class:`~mentalchat.engine.retry.RetryPolicy` decides about the
error. A batch never raises for one request: failures come back as results with ``error`` and
``error_kind`` set.

The calls of every engine of a process run on one background event loop
(:mod:`mentalchat.engine.loop`), so :meth:`HTTPEngine.chat_batch` works from plain threads and
:meth:`HTTPEngine.achat_batch` from inside a running event loop (a Ray async actor).

Secrets: the API key is read from the environment variable named by ``api_key_env`` and kept on
the engine only; every error message is scrubbed (:class:`mentalchat.secrets.Scrubber`) before it
reaches a result, a log line or an exception, and the cache stores responses only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from mentalchat.config import ConfigError
from mentalchat.engine.base import Engine
from mentalchat.engine.budget import BUDGET_ERROR, BudgetGuard, ClusterBudget
from mentalchat.engine.cache import CachedResponse, ResponseCache
from mentalchat.engine.capabilities import Downgrade, RequestShape, capabilities_for, retirement_for
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.limiter import AsyncLimiter, ClusterLimiter, get_limiter, limiter_name
from mentalchat.engine.loop import run_on_loop, run_sync
from mentalchat.engine.pricing import (
    admission_tokens,
    call_cost,
    estimate_tokens,
    is_local_url,
    price_is_known,
    resolve_price,
)
from mentalchat.engine.retry import CallError, RetryPolicy
from mentalchat.engine.types import ChatRequest, ChatResult, ErrorKind, SamplingConfig, request_key
from mentalchat.secrets import Scrubber

__all__ = ["HTTPEngine", "RawResponse"]

log = logging.getLogger(__name__)

PLACEHOLDER_KEY = "no-key-local-endpoint"

# ------------------------------------------------------------------------------------------------
# What backends return


@dataclasses.dataclass
class RawResponse:
    """One successful HTTP exchange, in provider-neutral terms."""

    text: str | None
    finish_reason: str | None
    tokens_in: int | None = None
    tokens_out: int | None = None
    refusal: str | None = None  # the provider declined (safety / policy); text is then None


# ------------------------------------------------------------------------------------------------
# The engine


@dataclasses.dataclass
class _Reservation:
    admitted: bool = True
    reserved: float = 0.0
    actual: float = 0.0


class HTTPEngine(Engine):
    """Base class of API backends; subclasses implement :meth:`_make_client`, :meth:`_call`,
    :meth:`_classify` and :meth:`_close_client`."""

    supports_json_schema: ClassVar[bool] = True

    def __init__(self, cfg: EngineConfig, *, budget: BudgetGuard | ClusterBudget | None = None) -> None:
        super().__init__(cfg)
        if not cfg.is_http:
            raise ValueError(f"{type(self).__name__} serves HTTP backends, not {cfg.backend!r}")
        self.base_url: str | None = self.resolve_base_url(cfg)
        key_env = cfg.api_key_env
        key = os.environ.get(key_env) if key_env else None
        if not key:
            if not (cfg.served or is_local_url(self.base_url)):
                raise ConfigError(
                    f"engine {cfg.label!r} ({cfg.backend}): the API key variable {key_env!r} is not set "
                    f"(set it, or point base_url at a local endpoint)"
                )
            key = PLACEHOLDER_KEY
        self.__key = key
        self._scrubber = Scrubber([key] if key != PLACEHOLDER_KEY else [])
        self.price = resolve_price(cfg, self.base_url)
        if (budget is not None or cfg.http.budget_usd is not None) and not price_is_known(cfg, self.base_url):
            raise ConfigError(
                f"engine {cfg.label!r} ({cfg.backend}, model {cfg.model!r}): no price is known for this model and a "
                "budget is set, so the cap could never stop it; give the price in the engine config "
                "(price_in_per_mtok and price_out_per_mtok, USD per 1M tokens), or remove the budget"
            )
        #: what requests carry now; starts from the capability table, weakened when the provider refuses
        self.initial_shape: RequestShape = capabilities_for(self.provider, cfg.model, cfg.capabilities)
        self.shape: RequestShape = self.initial_shape
        self.downgrades: list[Downgrade] = []
        self.retirement = retirement_for(self.provider, cfg.model) if not (cfg.served or is_local_url(self.base_url)) else None
        if self.retirement is not None:
            log.warning("engine %r: %s; calls will fail unless the endpoint still serves it", cfg.label, self.retirement.describe())
        self.cache = ResponseCache(cfg.cache_dir) if cfg.cache_dir else None
        self._retry = RetryPolicy(cfg.http)
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

    async def _call(self, client: Any, request: ChatRequest, sampling: SamplingConfig, shape: RequestShape) -> RawResponse:
        raise NotImplementedError

    def _classify(self, exc: BaseException) -> CallError:
        raise NotImplementedError

    async def _close_client(self, client: Any) -> None:
        return None

    def scrub(self, text: object) -> str:
        """A message with this engine's key (and anything key-shaped) removed."""
        return self._scrubber.text(text)

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
            return [self._error_result(r, msg, "setup", attempts=0) for r in requests]
        return list(await asyncio.gather(*(self._one_safe(r) for r in requests)))

    async def _one_safe(self, request: ChatRequest) -> ChatResult:
        try:
            return await self._one(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must not sink the batch
            log.error("unexpected failure for request %s:\n%s", request.id, self.scrub(traceback.format_exc()))
            return self._error_result(request, self.scrub(f"internal error: {type(exc).__name__}: {exc}"), "internal", attempts=0)

    def _error_result(
        self, request: ChatRequest, message: str, kind: ErrorKind, *, attempts: int, latency_s: float = 0.0
    ) -> ChatResult:
        return ChatResult(
            id=request.id,
            text=None,
            finish_reason="error",
            provider=self.provider,
            model=self.cfg.label,
            attempts=attempts,
            latency_s=latency_s,
            error=message,
            error_kind=kind,
            metadata=dict(request.metadata),
        )

    def _cached(self, request: ChatRequest, hit: CachedResponse) -> ChatResult:
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

    @contextlib.asynccontextmanager
    async def _reservation(self, est_in: int, est_out: int) -> AsyncIterator[_Reservation]:
        """Reserve the call's worst case on the budget; settle with ``actual`` on the way out."""
        res = _Reservation()
        if self._budget is None:
            yield res
            return
        res.reserved = call_cost(self.price, est_in, est_out)
        res.admitted = await self._budget.reserve(res.reserved)
        if not res.admitted:
            yield res
            return
        try:
            yield res
        finally:
            await self._budget.settle(res.reserved, res.actual)

    def _adapt(self, err: CallError, sent: RequestShape) -> bool:
        """After a refused parameter: weaken the engine's shape once for the run; True to call again.

        Calls in flight with the old shape fail the same way; they find the shape already changed
        and simply go again with it.
        """
        if err.unsupported is None:
            return False
        if self.shape != sent:
            return True
        step = self.shape.downgrade(err.unsupported)
        if step is None:
            return False
        self.shape, change = step
        self.downgrades.append(change)
        log.warning(
            "engine %r (%s): the provider refused %s for model %r (%s); sending %s from now on in this run",
            self.cfg.label, self.provider, change.param, self.cfg.model, self.scrub(err.message), change,
        )
        return True

    def _adaptations(self, shape: RequestShape) -> list[str]:
        """How ``shape`` differs from where this engine started (for the result and the run summary)."""
        out = []
        for name in ("structured", "max_tokens_param", "temperature", "seed", "system_role"):
            before, after = getattr(self.initial_shape, name), getattr(shape, name)
            if before != after:
                label = {"structured": "response_format", "max_tokens_param": "max_tokens"}.get(name, name)
                words = {True: "sent", False: "not sent"}
                out.append(str(Downgrade(label, words.get(before, str(before)), words.get(after, str(after)))))
        return out

    async def _attempt(
        self, request: ChatRequest, sampling: SamplingConfig, shape: RequestShape
    ) -> tuple[RawResponse | None, CallError | None]:
        """One call under the timeout: the response, or the error classified by the backend."""
        timeout = self.cfg.http.timeout_s
        try:
            return await asyncio.wait_for(self._call(self._client, request, sampling, shape), timeout=timeout), None
        except TimeoutError:
            return None, CallError(f"timed out after {timeout:g}s", kind="timeout", retryable=True)
        except CallError as exc:
            return None, exc
        except Exception as exc:  # noqa: BLE001 - classified by the backend (CancelledError passes)
            return None, self._classify(exc)

    async def _one(self, request: ChatRequest) -> ChatResult:
        sampling = self.sampling_for(request)
        key = (
            request_key(self.provider, self.cfg.model, request, sampling, endpoint=self.base_url)
            if self.cache is not None
            else None
        )
        if key is not None and self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get, key)
            if hit is not None:
                return self._cached(request, hit)
        assert self._limiter is not None
        est_in = estimate_tokens(request)
        est_out = sampling.max_tokens
        attempts = 0
        while True:
            # Reserve budget only once admitted by the limiter, so queued requests hold no budget.
            admit = admission_tokens(request, est_out)
            async with self._limiter.slot(admit) as slot:
                slot.tokens_used = 0  # a refused or failed call counts nothing
                async with self._reservation(est_in, est_out) as budget:
                    if not budget.admitted:
                        slot.outcome = "error"
                        return self._error_result(request, BUDGET_ERROR, "budget", attempts=attempts)
                    attempts += 1
                    shape = self.shape
                    t0 = time.monotonic()
                    raw, err = await self._attempt(request, sampling, shape)
                    latency = time.monotonic() - t0
                    if raw is not None:
                        t_in = raw.tokens_in if raw.tokens_in is not None else est_in
                        t_out = raw.tokens_out if raw.tokens_out is not None else math.ceil(len(raw.text or "") / 4)
                        budget.actual = call_cost(self.price, t_in, t_out)
                        slot.tokens_used = admit if self.cfg.http.tokens_counted == "admission" else t_in + t_out
                    else:
                        assert err is not None
                        slot.outcome = err.outcome
                        slot.retry_after_s = err.retry_after_s

            if raw is not None:
                result = await self._success(request, key, raw, t_in, t_out, budget.actual, latency, attempts)
                result.adaptations = self._adaptations(shape)
                return result

            assert err is not None
            if self._adapt(err, shape):
                continue  # the same request, shaped as the provider accepts (not a retry of a transient fault)
            message = self.scrub(err.describe())
            decision = self._retry.decide(err, attempts)
            if not decision.retry:
                return self._error_result(
                    request, f"{message} ({decision.why_not})", err.kind, attempts=attempts, latency_s=latency
                )
            log.info(
                "%s %s: attempt %d/%d failed (%s); retrying in %.2fs",
                self.provider, request.id, attempts, self._retry.max_attempts, message, decision.delay_s,
            )
            await asyncio.sleep(decision.delay_s)

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
        kind: ErrorKind | None = None
        finish = raw.finish_reason
        if raw.refusal is not None and raw.text is None:
            error = self.scrub(f"refused by the model: {raw.refusal}" if raw.refusal else "refused by the model")
            kind = "refused"
        elif raw.text is None:
            error = f"empty response (finish_reason={finish})"
            kind = "empty"
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
            error_kind=kind,
            metadata=dict(request.metadata),
        )
        if error is None and key is not None and self.cache is not None and raw.text is not None:
            await asyncio.to_thread(self.cache.put, key, CachedResponse(raw.text, finish, t_in, t_out))
        return result
