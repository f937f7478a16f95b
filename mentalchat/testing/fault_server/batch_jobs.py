"""Simulated batch jobs, shared by the OpenAI Batch and Gemini batch-mode endpoints of the fault server.

Why: the batch driver must be tested against something that behaves like a provider's batch
service (a job that is validated, runs for a while, finishes item by item, may expire or be
cancelled, and fails some lines) with the real SDKs, in seconds. A :class:`BatchBook` holds the
uploaded files and the jobs of one server; the protocol modules (:mod:`.openai_batch`,
:mod:`.gemini_batch`) turn them into each wire format.

Timing (:class:`BatchSettings`): a job is *validating* for ``validate_s``, then *in progress* for
``process_s`` while its items finish one after another (item ``i`` of ``n`` at
``validate_s + (i + 1) / n * process_s``), then *finalizing* for ``finalize_s``, then *completed*.
With ``expire_after_s`` shorter than that, the job *expires* at that time with the items finished
so far. A cancelled job is *cancelling* for ``finalize_s``, then *cancelled*, keeping the items
finished before the cancel.

Every item is answered when the job is created, through the server's own fault choice (scripts
with ``match=``, ``fault_fn``, ``fault_rates``, ``default_fault``) and then ``item_fault_rates``
(batch-only faults, seeded), and the server's responder, so JSON-schema requests get the same
schema-valid JSON an online call gets. A fault becomes a failed line (429, 5xx, 4xx, a 504 for a
timeout), a refusal or a cut answer, as online.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from mentalchat.testing.fault_server.faults import Fault
from mentalchat.testing.fault_server.records import RequestRecord, _messages_of

if TYPE_CHECKING:
    from mentalchat.testing.fault_server.server import FaultServer

__all__ = ["BatchBook", "BatchItem", "BatchJob", "BatchSettings", "StoredFile"]


@dataclasses.dataclass
class BatchSettings:
    """How simulated batch jobs progress and fail (seconds on the server's monotonic clock)."""

    validate_s: float = 0.05
    process_s: float = 0.2
    finalize_s: float = 0.05
    expire_after_s: float | None = None  # a job not done by then expires with what it finished
    item_fault_rates: dict[str, float] = dataclasses.field(default_factory=dict)  # e.g. {"500": 0.2}
    seed: int = 0


@dataclasses.dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int


@dataclasses.dataclass
class BatchItem:
    """One request of a job and the answer decided for it at creation."""

    custom_id: str
    body: dict[str, Any]
    status: int  # 200, or the HTTP status of the failed line
    payload: dict[str, Any]  # the protocol's 200 body, or its error body
    fault: str
    text: str | None = None


@dataclasses.dataclass
class BatchJob:
    """One job: its items, settings and clock; the protocol modules read its state from here."""

    id: str
    protocol: str  # openai | gemini
    model: str | None
    items: list[BatchItem]
    settings: BatchSettings
    t0: float  # monotonic time of creation
    created_at: int  # wall clock, seconds
    tag: str | None = None  # OpenAI metadata / Gemini display name
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    input_file_id: str | None = None
    validation_errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    t_cancel: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None

    # ---- the clock ------------------------------------------------------------------------------

    def _t_item(self, i: int) -> float:
        s = self.settings
        n = max(len(self.items), 1)
        return self.t0 + s.validate_s + (i + 1) / n * s.process_s

    @property
    def t_processed(self) -> float:
        return self.t0 + self.settings.validate_s + self.settings.process_s

    def finished_items(self, now: float) -> list[int]:
        """Indexes of the items finished by ``now`` (none after a failed validation)."""
        if self.validation_errors:
            return []
        stop = now
        if self.t_cancel is not None:
            stop = min(stop, self.t_cancel)
        if self.settings.expire_after_s is not None:
            stop = min(stop, self.t0 + self.settings.expire_after_s)
        return [i for i in range(len(self.items)) if self._t_item(i) <= stop]

    def phase(self, now: float) -> str:
        """validating | in_progress | finalizing | completed | failed | expired | cancelling | cancelled."""
        s = self.settings
        if now < self.t0 + s.validate_s:
            return "validating"
        if self.validation_errors:
            return "failed"
        if self.t_cancel is not None:
            return "cancelling" if now < self.t_cancel + s.finalize_s else "cancelled"
        expires = self.t0 + s.expire_after_s if s.expire_after_s is not None else None
        if expires is not None and self.t_processed > expires and now >= expires:
            return "expired"
        if now < self.t_processed:
            return "in_progress"
        if now < self.t_processed + s.finalize_s:
            return "finalizing"
        return "completed"

    def terminal(self, now: float) -> bool:
        return self.phase(now) in ("completed", "failed", "expired", "cancelled")

    def t_phase(self, name: str) -> float | None:
        """When the job entered a phase (monotonic), for the protocols' timestamps."""
        s = self.settings
        return {
            "in_progress": self.t0 + s.validate_s,
            "finalizing": self.t_processed,
            "completed": self.t_processed + s.finalize_s,
            "failed": self.t0 + s.validate_s,
            "expired": self.t0 + (s.expire_after_s or 0.0),
            "cancelling": self.t_cancel,
            "cancelled": None if self.t_cancel is None else self.t_cancel + s.finalize_s,
        }.get(name)

    def wall(self, t: float | None) -> int | None:
        """A monotonic time as Unix seconds."""
        return None if t is None else int(self.created_at + (t - self.t0))


class BatchBook:
    """The files and batch jobs of one :class:`FaultServer` (thread-safe)."""

    def __init__(self, server: FaultServer, settings: BatchSettings | None = None) -> None:
        self.server = server
        self.settings = settings or BatchSettings()
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, BatchJob] = {}
        self.creates = 0  # batch create calls that made a job (what resume tests count)
        self._next: deque[BatchSettings] = deque()
        self._lock = threading.Lock()
        self._rng = random.Random(self.settings.seed)
        self._ids = itertools.count(1)

    # ---- files ----------------------------------------------------------------------------------

    def add_file(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        with self._lock:
            f = StoredFile(f"file-{uuid.uuid4().hex[:24]}", filename, purpose, data, int(time.time()))
            self.files[f.id] = f
            return f

    # ---- jobs -----------------------------------------------------------------------------------

    def script_jobs(self, settings: list[BatchSettings]) -> None:
        """Settings for the next jobs created, in order (then :attr:`settings` again)."""
        with self._lock:
            self._next.extend(settings)

    def create(self, protocol: str, model: str | None, requests: list[tuple[str, dict[str, Any]]], *,
               tag: str | None = None, metadata: dict[str, str] | None = None, input_file_id: str | None = None,
               validation_errors: list[dict[str, Any]] | None = None) -> BatchJob:
        """A new job whose items are answered now (shown as they 'finish')."""
        with self._lock:
            settings = self._next.popleft() if self._next else self.settings
        rates = settings.item_fault_rates
        items = [] if validation_errors else [self.answer(protocol, model, cid, body, rates) for cid, body in requests]
        with self._lock:
            n = next(self._ids)
            prefix = "batch_" if protocol == "openai" else "batches/"
            job = BatchJob(
                id=f"{prefix}{n:04d}{uuid.uuid4().hex[:12]}", protocol=protocol, model=model, items=items,
                settings=dataclasses.replace(settings), t0=time.monotonic(), created_at=int(time.time()),
                tag=tag, metadata=dict(metadata or {}), input_file_id=input_file_id,
                validation_errors=list(validation_errors or []),
            )
            self.jobs[job.id] = job
            self.creates += 1
            return job

    def get(self, job_id: str) -> BatchJob | None:
        with self._lock:
            return self.jobs.get(job_id)

    def cancel(self, job: BatchJob) -> None:
        with self._lock:
            if job.t_cancel is None and not job.terminal(time.monotonic()):
                job.t_cancel = time.monotonic()

    def listing(self, protocol: str) -> list[BatchJob]:
        """This protocol's jobs, newest first (as both APIs list them)."""
        with self._lock:
            jobs = [j for j in self.jobs.values() if j.protocol == protocol]
        return sorted(jobs, key=lambda j: j.t0, reverse=True)

    # ---- answering one item ---------------------------------------------------------------------

    def _fault(self, rec: RequestRecord, rates: dict[str, float]) -> Fault:
        fault = self.server._choose_fault(rec)  # the server's own fault order
        if fault.kind == "ok" and rates:
            with self._lock:
                u = self._rng.random()
            acc = 0.0
            for spec, p in rates.items():
                acc += p
                if u < acc:
                    return Fault.parse(spec)
        return fault

    def answer(self, protocol: str, model: str | None, custom_id: str, body: dict[str, Any],
               rates: dict[str, float] | None = None) -> BatchItem:
        """What the server would answer ``body`` online, decided once: (status, payload)."""
        from mentalchat.testing.fault_server import gemini_protocol, openai_protocol

        srv = self.server
        rec = RequestRecord(index=-1, protocol=protocol, method="BATCH", path="batch", model=model, headers={},
                            body=body, t_start=time.monotonic(), in_flight=0)
        fault = self._fault(rec, self.settings.item_fault_rates if rates is None else rates)

        def error(status: int, message: str) -> BatchItem:
            if protocol == "openai":
                payload = openai_protocol.error_body(status, message, fault.code)
            else:
                payload = gemini_protocol.error_body(status, message, None)
            return BatchItem(custom_id, body, status, payload, fault.kind)

        if fault.kind == "rate_limit":
            return error(429, fault.message or "Rate limit reached; retry later")
        if fault.kind == "error":
            return error(fault.http_status, fault.message or f"injected error {fault.http_status}")
        if fault.kind == "timeout":
            return error(504, "the request timed out inside the batch")
        if fault.kind in ("invalid_json", "truncated_json", "disconnect"):
            return error(500, f"internal error ({fault.kind})")
        messages = _messages_of(protocol, body)
        params = srv._params(protocol, model, body)
        if fault.kind in ("refusal", "blocked"):
            payload = srv._payload(protocol, model, messages, None, "refusal",
                                   refusal=fault.message or srv.refusal_text)
            if fault.kind == "blocked" and protocol == "gemini":
                payload = gemini_protocol.blocked_payload(payload)
            return BatchItem(custom_id, body, 200, payload, fault.kind)
        try:
            text = (fault.message or srv.refusal_text) if fault.kind == "refusal_text" else srv.responder(messages, params)
        except Exception as exc:  # noqa: BLE001 - a broken test responder fails the line, visibly
            return error(500, f"responder failed: {type(exc).__name__}: {exc}")
        words = text.split()
        finish = "stop"
        max_tokens = params.get("max_tokens")
        if fault.kind == "length":
            text, finish = " ".join(words[: max(1, len(words) // 2)]), "length"
        elif max_tokens is not None and len(words) > int(max_tokens):
            text, finish = " ".join(words[: int(max_tokens)]), "length"
        payload = srv._payload(protocol, model, messages, text, finish)
        return BatchItem(custom_id, body, 200, payload, fault.kind, text=text)


def parse_jsonl(data: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(lines, validation errors) of an uploaded JSONL file; errors in OpenAI's ``errors.data`` shape."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for n, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            errors.append({"code": "invalid_json_line", "line": n, "message": f"line {n} is not valid JSON",
                           "param": None})
            continue
        if not isinstance(obj, dict):
            errors.append({"code": "invalid_request", "line": n, "message": "a line must be a JSON object", "param": None})
            continue
        lines.append(obj | {"_line": n})
    return lines, errors
