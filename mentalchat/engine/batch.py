"""Batch mode: an engine's calls sent through the provider's batch API at about half the price.

Why a driver of its own: a batch call is not a slow online call. Requests are submitted together,
the provider answers within hours, and the process that submitted them may not live to see it.
:class:`BatchDriver` is the provider-neutral part: it builds each request exactly as the online
backend would (:func:`~mentalchat.engine.openai_backend.openai_params`,
:func:`~mentalchat.engine.gemini_backend.gemini_config`), answers what the response cache already
holds, reserves the worst case on the budget, records every submission in a
:class:`~mentalchat.engine.batch_journal.BatchJournal` before and after creating it, polls the open
batches, and maps each answer back to a :class:`~mentalchat.engine.types.ChatResult` priced at the
batch rate. A restarted driver adopts the journal's open batches whose requests it still needs
(same id, same payload) instead of submitting them again.

Items that fail inside a batch (a per-line 429/5xx, expiry, a cancelled batch) are retried
(``batch.retry``: a follow-up batch, online calls through the ordinary engine, or not at all) for
at most ``batch.max_rounds`` batches; per-line 4xx errors are final, as online. Nothing waits
forever: past ``batch.max_wait_s`` the driver raises :class:`BatchWaitError`, naming each open
batch and its state; the batches stay open in the journal, so a rerun collects them.

A provider (:class:`BatchProvider`: :mod:`.openai_batch`, :mod:`.gemini_batch`) only speaks its
wire format: one request's payload, submit, find by tag, status, results, cancel.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from mentalchat.config import ConfigError
from mentalchat.engine.base import Engine, create_engine
from mentalchat.engine.batch_journal import BatchJournal, BatchRecord
from mentalchat.engine.budget import BUDGET_ERROR, BudgetGuard
from mentalchat.engine.cache import CachedResponse, ResponseCache
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.http import HTTPEngine, RawResponse
from mentalchat.engine.pricing import Price, batch_price, call_cost, estimate_tokens
from mentalchat.engine.retry import CallError, RetryPolicy
from mentalchat.engine.types import ChatRequest, ChatResult, ErrorKind, SamplingConfig, request_key
from mentalchat.errors import MentalchatError

__all__ = [
    "BatchDriver",
    "BatchEngine",
    "BatchError",
    "BatchProgress",
    "BatchProvider",
    "BatchStatus",
    "BatchWaitError",
    "run_batch",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

ResultSink = Callable[[list[ChatResult]], None]


class BatchError(MentalchatError, RuntimeError):
    """A batch could not be submitted, polled or read (after the control-call retries)."""


class BatchWaitError(BatchError, TimeoutError):
    """Batches still open after ``batch.max_wait_s``; they stay in the journal for a rerun to collect."""


@dataclasses.dataclass
class BatchStatus:
    """A batch's state as the provider reports it, in neutral terms."""

    state: str  # the provider's name: in_progress, JOB_STATE_RUNNING, ...
    done: bool  # terminal: results (if any) can be read
    succeeded: bool = False  # terminal and finished normally (completed / SUCCEEDED)
    completed: int | None = None  # requests answered so far, when the provider says
    failed: int | None = None
    total: int | None = None
    message: str | None = None  # batch-level errors (a failed validation)
    retryable: bool = True  # for items without a result in a terminal batch


@dataclasses.dataclass
class BatchProgress:
    """What the progress line shows: open batches by state, requests finished of all."""

    engine: str
    states: dict[str, int]
    done: int
    total: int

    def line(self) -> str:
        states = ", ".join(f"{k} {v}" for k, v in sorted(self.states.items())) or "none open"
        return f"batch {self.engine}: {states}; {self.done}/{self.total} requests done"


class BatchProvider(abc.ABC):
    """One provider's batch protocol (see :mod:`.openai_batch` and :mod:`.gemini_batch`)."""

    name: ClassVar[str]
    #: payload bytes one batch may carry (the provider's limit with a margin)
    max_bytes: ClassVar[int]

    def __init__(self, engine: HTTPEngine) -> None:
        self.engine = engine
        self.cfg = engine.cfg

    @abc.abstractmethod
    def payload(self, request: ChatRequest, sampling: SamplingConfig) -> dict[str, Any]:
        """One request as the batch carries it (JSON-able; also what its fingerprint hashes)."""

    @abc.abstractmethod
    def submit(self, tag: str, entries: Sequence[tuple[str, dict[str, Any]]]) -> str:
        """Create a batch of (id, payload) entries labelled ``tag``; returns the provider's batch id."""

    @abc.abstractmethod
    def find(self, tag: str) -> str | None:
        """The id of a batch created with ``tag`` (after a crash before its id was journaled), or None."""

    @abc.abstractmethod
    def status(self, batch_id: str) -> BatchStatus: ...

    @abc.abstractmethod
    def results(self, batch_id: str, ids: Sequence[str]) -> dict[str, RawResponse | CallError]:
        """Every answered request of a finished batch: a response, or the error of its line."""

    @abc.abstractmethod
    def cancel(self, batch_id: str) -> None: ...

    def classify(self, exc: BaseException) -> CallError:
        """An SDK exception of a control call as a :class:`CallError` (the online backend's rules)."""
        if isinstance(exc, CallError):
            return exc
        return self.engine._classify(exc)  # the same classification as online calls

    def close(self) -> None:  # an optional hook
        """Release the SDK client."""


def provider_for(engine: HTTPEngine) -> BatchProvider:
    """The batch protocol of an engine's backend."""
    if engine.cfg.backend == "openai":
        from mentalchat.engine.openai_batch import OpenAIBatchProvider

        return OpenAIBatchProvider(engine)
    if engine.cfg.backend == "gemini":
        from mentalchat.engine.gemini_batch import GeminiBatchProvider

        return GeminiBatchProvider(engine)
    raise ConfigError(f"engine {engine.cfg.label!r}: batch mode needs backend openai or gemini, not {engine.cfg.backend!r}")


def fingerprint(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclasses.dataclass
class _Item:
    request: ChatRequest
    sampling: SamplingConfig
    payload: dict[str, Any]
    fp: str
    size: int
    worst_usd: float
    cache_key: str | None
    round: int = 1


@dataclasses.dataclass
class _Open:
    """A batch this driver waits for, with the items it still wants from it."""

    record: BatchRecord
    items: dict[str, _Item]
    reserved_usd: float
    status: BatchStatus | None = None


class BatchDriver:
    """Runs requests through an engine's batch API (see the module docstring).

    Args:
        cfg: an ``openai`` or ``gemini`` engine with ``batch`` set.
        journal: the journal file in the run's folder (None: memory only, no resume).
        budget: the run's dollar guard; worst cases are reserved before a batch is submitted.
        on_progress: called with a :class:`BatchProgress` whenever the batches' states change.
        stop: set by the caller to stop waiting (open batches stay in the journal).
        clock, sleep: injectable for tests.
    """

    def __init__(
        self,
        cfg: EngineConfig,
        journal: str | Path | None = None,
        *,
        budget: BudgetGuard | None = None,
        on_progress: Callable[[BatchProgress], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        if cfg.batch is None:
            raise ConfigError(f"engine {cfg.label!r} has no batch options")
        if not cfg.is_http:
            raise ConfigError(f"engine {cfg.label!r}: batch mode needs backend openai or gemini, not {cfg.backend!r}")
        self.cfg = cfg
        self.opts = cfg.batch
        if budget is None and cfg.http.budget_usd is not None:
            budget = BudgetGuard(cfg.http.budget_usd)
        self.budget = budget
        online = create_engine(cfg.model_copy(update={"batch": None}), **({"budget": budget} if budget else {}))
        assert isinstance(online, HTTPEngine)
        self.online: HTTPEngine = online
        self.price: Price = batch_price(cfg, online.price)
        self.provider = provider_for(online)
        self.journal = BatchJournal(journal)
        self.cache = ResponseCache(cfg.cache_dir) if cfg.cache_dir else None
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self._control_policy = RetryPolicy(cfg.http)
        self._last_line: str | None = None

    # ---- public -------------------------------------------------------------------------------

    def run(self, requests: Sequence[ChatRequest], sink: ResultSink | None = None) -> list[ChatResult]:
        """One result per request, in order; each finished batch's results also go to ``sink`` at once.

        Raises :class:`BatchWaitError` past ``max_wait_s`` (results collected until then have
        reached the sink) and :class:`BatchError` when the provider cannot be polled.
        """
        requests = list(requests)
        ids = [r.id for r in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("batch requests need unique ids (they are the batch lines' custom ids)")
        done: dict[str, ChatResult] = {}

        def emit(results: list[ChatResult]) -> None:
            for r in results:
                done[r.id] = r
            if sink is not None and results:
                sink(results)

        items = self._prepare(requests, emit)
        open_batches = self._adopt(items)
        adopted = {cid for ob in open_batches for cid in ob.items}
        open_batches += self._submit_all([it for cid, it in items.items() if cid not in adopted], emit)
        self._wait(open_batches, emit, total=len(requests), already=lambda: len(done))
        missing = [r.id for r in requests if r.id not in done]
        if missing and not self.stop.is_set():  # pragma: no cover - a bug, not a provider answer
            raise RuntimeError(f"internal error: {len(missing)} batch requests ended without a result")
        return [done[r.id] for r in requests if r.id in done]

    def close(self) -> None:
        self.provider.close()
        self.online.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- preparing and submitting --------------------------------------------------------------

    def _prepare(self, requests: list[ChatRequest], emit: ResultSink) -> dict[str, _Item]:
        """Items to batch; cache hits are emitted at once (free, no call)."""
        items: dict[str, _Item] = {}
        hits: list[ChatResult] = []
        for req in requests:
            sampling = self.online.sampling_for(req)
            key = None
            if self.cache is not None:
                key = request_key(self.online.provider, self.cfg.model, req, sampling, endpoint=self.online.base_url)
                hit = self.cache.get(key)
                if hit is not None:
                    hits.append(self._result(req, hit.text, hit.finish_reason, hit.tokens_in, hit.tokens_out,
                                             cost=0.0, latency=0.0, attempts=0, cached=True))
                    continue
            payload = self.provider.payload(req, sampling)
            worst = call_cost(self.price, estimate_tokens(req), sampling.max_tokens)
            items[req.id] = _Item(req, sampling, payload, fingerprint(payload), len(json.dumps(payload, default=str)),
                                  worst, key)
        emit(hits)
        return items

    def _adopt(self, items: dict[str, _Item]) -> list[_Open]:
        """The journal's open batches that hold requests still wanted (same id and payload)."""
        adopted: list[_Open] = []
        for rec in self.journal.open_records():
            if (rec.provider, rec.model, rec.endpoint) != (self.provider.name, self.cfg.model, self.online.base_url):
                continue
            wanted = {cid: items[cid] for cid, fp in zip(rec.ids, rec.fingerprints, strict=True)
                      if cid in items and items[cid].fp == fp}
            if not wanted:
                continue
            if rec.batch_id is None:  # died between asking for the batch and journaling its id
                found = self._control(lambda rec=rec: self.provider.find(rec.tag), f"looking up batch {rec.tag}")
                if found is None:
                    self.journal.update(rec, status="abandoned", state="never created")
                    continue
                self.journal.update(rec, batch_id=found, state="submitted")
            for it in wanted.values():
                it.round = rec.round
            reserved = sum(it.worst_usd for it in wanted.values())
            if self.budget is not None and not self.budget.try_reserve_now(reserved):
                reserved = 0.0  # already paid for at the provider: collected whatever the cap says
            log.info("batch %s: resuming %s (%d requests, round %d)", self.cfg.label, rec.batch_id, len(wanted), rec.round)
            adopted.append(_Open(rec, wanted, reserved))
        return adopted

    def _chunks(self, items: list[_Item]) -> list[list[_Item]]:
        limit_n = self.opts.max_requests_per_batch
        limit_b = self.opts.max_bytes_per_batch or self.provider.max_bytes
        chunks: list[list[_Item]] = []
        cur: list[_Item] = []
        size = 0
        for it in items:
            if cur and (len(cur) >= limit_n or size + it.size > limit_b):
                chunks.append(cur)
                cur, size = [], 0
            cur.append(it)
            size += it.size + 1
        if cur:
            chunks.append(cur)
        return chunks

    def _submit_all(self, items: list[_Item], emit: ResultSink) -> list[_Open]:
        """Reserve, journal and submit ``items`` as batches; budget refusals and rejected batches are emitted."""
        opened: list[_Open] = []
        for chunk in self._chunks(items):
            admitted: list[_Item] = []
            refused: list[ChatResult] = []
            reserved = 0.0
            for it in chunk:
                if self.budget is None or self.budget.try_reserve_now(it.worst_usd):
                    admitted.append(it)
                    reserved += it.worst_usd if self.budget is not None else 0.0
                else:
                    refused.append(self._error(it, BUDGET_ERROR, "budget", attempts=it.round - 1))
            emit(refused)
            if not admitted:
                continue
            opened_one = self._submit(admitted, reserved, emit)
            if opened_one is not None:
                opened.append(opened_one)
        return opened

    def _submit(self, items: list[_Item], reserved: float, emit: ResultSink) -> _Open | None:
        tag = f"mentalchat-{uuid.uuid4().hex[:16]}"
        rec = self.journal.add(BatchRecord(
            tag=tag, provider=self.provider.name, model=self.cfg.model, endpoint=self.online.base_url,
            round=max(it.round for it in items), ids=[it.request.id for it in items],
            fingerprints=[it.fp for it in items],
        ))
        entries = [(it.request.id, it.payload) for it in items]
        try:
            batch_id = self._control(lambda: self.provider.submit(tag, entries), f"submitting a batch of {len(items)}")
        except BatchError as exc:
            # The provider refused the batch (a 4xx, or errors past every retry): its requests fail,
            # as an online call would; nothing was created, so nothing is left to collect.
            self.journal.update(rec, status="abandoned", state="rejected")
            self._settle(reserved, 0.0)
            kind = exc.kind if isinstance(exc, _ControlError) else "other"
            emit([self._error(it, self.online.scrub(str(exc)), kind, attempts=it.round) for it in items])
            return None
        self.journal.update(rec, batch_id=batch_id, state="submitted")
        log.info("batch %s: submitted %s (%d requests, round %d)", self.cfg.label, batch_id, len(items), rec.round)
        return _Open(rec, {it.request.id: it for it in items}, reserved)

    # ---- waiting and collecting ----------------------------------------------------------------

    def _wait(self, open_batches: list[_Open], emit: ResultSink, *, total: int, already: Callable[[], int]) -> None:
        deadline = time.monotonic() + self.opts.max_wait_s
        while open_batches:
            if self.stop.is_set():
                return
            retry: list[_Item] = []
            still: list[_Open] = []
            for ob in open_batches:
                assert ob.record.batch_id is not None
                try:
                    ob.status = self._control(lambda ob=ob: self.provider.status(ob.record.batch_id),
                                              f"polling batch {ob.record.batch_id}")
                except _ControlError as exc:
                    if exc.kind != "http_4xx":
                        raise
                    # the provider no longer knows the batch (deleted, another project): submit again
                    log.warning("batch %s: %s; submitting its %d requests again", self.cfg.label, exc, len(ob.items))
                    self.journal.update(ob.record, status="abandoned", state="unknown to the provider")
                    self._settle(ob.reserved_usd, 0.0)
                    still += self._submit_all(list(ob.items.values()), emit)
                    continue
                if ob.status.state != ob.record.state:
                    self.journal.update(ob.record, state=ob.status.state)
                if ob.status.done:
                    retry += self._collect(ob, emit)
                else:
                    still.append(ob)
            open_batches = still
            if retry:
                open_batches += self._retry(retry, emit)
            self._report(open_batches, total, already())
            if not open_batches:
                return
            if time.monotonic() >= deadline:
                names = "; ".join(f"{ob.record.batch_id} ({ob.status.state if ob.status else ob.record.state}, "
                                  f"{_counts(ob.status)})" for ob in open_batches)
                raise BatchWaitError(
                    f"engine {self.cfg.label!r}: gave up waiting after {self.opts.max_wait_s:g}s (batch.max_wait_s) "
                    f"for {len(open_batches)} batch(es): {names}. They stay open"
                    + (f" in {self.journal.path}; rerun to collect them" if self.journal.path else "")
                )
            self.stop.wait(min(self.opts.poll_interval_s, max(0.0, deadline - time.monotonic())))

    def _collect(self, ob: _Open, emit: ResultSink) -> list[_Item]:
        """Results of a finished batch: emitted, cached, settled; returns the items to retry."""
        rec, status = ob.record, ob.status
        assert rec.batch_id is not None and status is not None
        answers = self._control(lambda: self.provider.results(rec.batch_id, rec.ids),
                                f"reading the results of batch {rec.batch_id}")
        latency = max(0.0, time.time() - rec.submitted_at)
        final: list[ChatResult] = []
        retry: list[_Item] = []
        actual = 0.0
        for cid, it in ob.items.items():
            ans = answers.get(cid)
            if isinstance(ans, RawResponse):
                res = self._success(it, ans, latency)
                actual += res.cost_usd
                final.append(res)
                continue
            if ans is None:  # no line for it: the batch ended (expired, cancelled, failed) without it
                why = status.message or f"no result: batch {rec.batch_id} ended {status.state}"
                ans = CallError(self.online.scrub(why), kind="timeout" if "xpire" in status.state else "other",
                                retryable=status.retryable)
            if ans.retryable and self.opts.retry != "none" and it.round < self.opts.max_rounds:
                it.round += 1
                retry.append(it)
            else:
                why_not = "not retried" if not ans.retryable or self.opts.retry == "none" else (
                    f"gave up after {it.round} batches")
                final.append(self._error(it, self.online.scrub(f"{ans.describe()} ({why_not})"), ans.kind,
                                         attempts=it.round, latency=latency))
        emit(final)
        self._settle(ob.reserved_usd, actual)
        self.journal.update(rec, status="collected")
        log.info("batch %s: collected %s (%s): %d answered, %d to retry, %d failed", self.cfg.label, rec.batch_id,
                 status.state, sum(1 for r in final if r.error is None), len(retry),
                 sum(1 for r in final if r.error is not None))
        return retry

    def _retry(self, items: list[_Item], emit: ResultSink) -> list[_Open]:
        if self.opts.retry == "online":
            log.info("batch %s: retrying %d failed items online", self.cfg.label, len(items))
            emit(self.online.chat_batch([it.request for it in items]))
            return []
        log.info("batch %s: retrying %d failed items in a follow-up batch", self.cfg.label, len(items))
        return self._submit_all(items, emit)

    def _report(self, open_batches: list[_Open], total: int, done: int) -> None:
        states = Counter((ob.status.state if ob.status else ob.record.state) for ob in open_batches)
        progress = BatchProgress(self.cfg.label, dict(states), done, total)
        line = progress.line()
        if line != self._last_line:
            self._last_line = line
            log.info("%s", line)
            if self.on_progress is not None:
                self.on_progress(progress)

    # ---- results -------------------------------------------------------------------------------

    def _success(self, it: _Item, raw: RawResponse, latency: float) -> ChatResult:
        t_in = raw.tokens_in if raw.tokens_in is not None else estimate_tokens(it.request)
        t_out = raw.tokens_out if raw.tokens_out is not None else -(-len(raw.text or "") // 4)
        cost = call_cost(self.price, t_in, t_out)
        if raw.refusal is not None and raw.text is None:
            msg = f"refused by the model: {raw.refusal}" if raw.refusal else "refused by the model"
            return self._error(it, self.online.scrub(msg), "refused", attempts=it.round, latency=latency,
                               finish=raw.finish_reason, tokens=(t_in, t_out), cost=cost)
        if raw.text is None:
            return self._error(it, f"empty response (finish_reason={raw.finish_reason})", "empty", attempts=it.round,
                               latency=latency, finish=raw.finish_reason, tokens=(t_in, t_out), cost=cost)
        if it.cache_key is not None and self.cache is not None:
            self.cache.put(it.cache_key, CachedResponse(raw.text, raw.finish_reason, t_in, t_out))
        return self._result(it.request, raw.text, raw.finish_reason, t_in, t_out, cost=cost, latency=latency,
                            attempts=it.round)

    def _result(self, req: ChatRequest, text: str | None, finish: str | None, t_in: int, t_out: int, *,
                cost: float, latency: float, attempts: int, cached: bool = False) -> ChatResult:
        return ChatResult(id=req.id, text=text, finish_reason=finish, provider=self.online.provider, model=self.cfg.label,
                          tokens_in=t_in, tokens_out=t_out, cost_usd=cost, latency_s=latency, attempts=attempts,
                          cached=cached, metadata=dict(req.metadata))

    def _error(self, it: _Item, message: str, kind: ErrorKind, *, attempts: int, latency: float = 0.0,
               finish: str | None = "error", tokens: tuple[int, int] = (0, 0), cost: float = 0.0) -> ChatResult:
        return ChatResult(id=it.request.id, text=None, finish_reason=finish, provider=self.online.provider,
                          model=self.cfg.label, tokens_in=tokens[0], tokens_out=tokens[1], cost_usd=cost,
                          latency_s=latency, attempts=attempts, error=message, error_kind=kind,
                          metadata=dict(it.request.metadata))

    def _settle(self, reserved: float, actual: float) -> None:
        if self.budget is not None:
            self.budget.settle_now(reserved, actual)

    # ---- control calls -------------------------------------------------------------------------

    def _control(self, fn: Callable[[], T], what: str) -> T:
        """A control call (upload, create, poll, download) under the engine's retry policy."""
        attempts = 0
        while True:
            attempts += 1
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified, then retried or raised
                err = self.provider.classify(exc)
            decision = self._control_policy.decide(err, attempts)
            message = self.online.scrub(err.describe())
            if not decision.retry:
                raise _ControlError(f"{self.provider.name} batch: {what} failed: {message} ({decision.why_not})",
                                    err.kind) from None
            log.info("batch %s: %s failed (%s); retrying in %.2fs", self.cfg.label, what, message, decision.delay_s)
            if self.stop.wait(decision.delay_s):
                raise _ControlError(f"{self.provider.name} batch: {what} interrupted", "other")


class _ControlError(BatchError):
    def __init__(self, message: str, kind: ErrorKind) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


def _counts(status: BatchStatus | None) -> str:
    if status is None or status.total is None:
        return "counts unknown"
    return f"{status.completed or 0} completed, {status.failed or 0} failed of {status.total}"


def run_batch(
    requests: Sequence[ChatRequest],
    cfg: EngineConfig,
    *,
    journal: str | Path | None = None,
    budget: BudgetGuard | None = None,
    sink: ResultSink | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
    stop: threading.Event | None = None,
) -> list[ChatResult]:
    """Answer ``requests`` through ``cfg``'s batch API (one result per request, in order)."""
    with BatchDriver(cfg, journal, budget=budget, on_progress=on_progress, stop=stop) as driver:
        return driver.run(requests, sink)


class BatchEngine(Engine):
    """An :class:`Engine` whose ``chat_batch`` is one batch run, for stages that only know engines.

    Without a ``journal`` the batches live in memory (no resume after a crash); stages that own a
    run folder pass one (the judge, the synthetic generator).
    """

    supports_json_schema = True

    def __init__(self, cfg: EngineConfig, *, journal: str | Path | None = None, budget: BudgetGuard | None = None) -> None:
        super().__init__(cfg)
        self.provider = cfg.backend
        self._driver = BatchDriver(cfg, journal, budget=budget)

    def chat_batch(self, requests: list[ChatRequest]) -> list[ChatResult]:
        return self._driver.run(requests)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._driver.close()
