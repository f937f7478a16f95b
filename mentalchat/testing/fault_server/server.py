"""The server: lifecycle, routing, fault choice, rate limiting, latency and request records.

Why: one object a test can start in a ``with`` block (or the CLI can serve from), that ties the
protocol modules, the fault model and the records together and owns everything that is shared
between concurrent calls (scripts, the random generator, the rate-limit bucket, the records).

Faults are chosen per call in this order: a scripted fault queued for a prompt containing some
marker text (:meth:`FaultServer.script` with ``match=``), the next fault of the global script,
``fault_fn(record)`` if given, a random fault drawn from ``fault_rates`` (seeded), then
``default_fault``. Scripts are the way to make concurrent tests deterministic: a fault queued with
``match="q7"`` hits the first call(s) whose messages mention ``q7``, whatever the arrival order.

A configured rate limit (``rpm`` or ``rps``, a token bucket holding ``burst`` requests) answers
429 + ``Retry-After`` (the time until a request would be admitted) before any latency or fault.
A tokens-per-minute limit (``tpm``) counts what the request may use at admission, as OpenAI does:
the prompt at about 4 characters per token plus ``max_tokens``; over it, a 429 whose message and
Retry-After say how long until the tokens are there.

Latency is ``latency_s + uniform(0, jitter_s)`` per answered call; with ``latency_sigma`` > 0 the
``latency_s`` part is lognormal with that median and sigma (a heavy tail, as real providers show),
capped at 20 times the median.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

try:
    from aiohttp import web
except ImportError as exc:  # aiohttp is a test/benchmark dependency, not a runtime one
    raise ImportError(
        "mentalchat.testing.fault_server needs aiohttp, which is not installed; "
        'install the testing extra: pip install -e ".[testing]"',
        name="aiohttp",
    ) from exc

from mentalchat.engine.token_bucket import TokenBucket
from mentalchat.testing.fault_server import gemini_batch, gemini_protocol, openai_batch, openai_protocol
from mentalchat.testing.fault_server.batch_jobs import BatchBook, BatchSettings
from mentalchat.testing.fault_server.faults import Fault, _fmt_seconds
from mentalchat.testing.fault_server.provider_rules import ProviderRules, bad_key_error, quota_error
from mentalchat.testing.fault_server.records import _SECRET_HEADERS, RequestRecord, _messages_of
from mentalchat.testing.fault_server.schema_fill import PAIRWISE_RULES, Responder, _count_tokens, default_responder


class FaultServer:
    """OpenAI + Gemini REST server with scripted faults, rate limits, latency and request records.

    Args:
        host, port: where to listen (port 0: a free port, see :attr:`port`).
        responder: ``(messages, params) -> text``; default :func:`default_responder`.
        latency_s, jitter_s: each answered call waits ``latency_s + uniform(0, jitter_s)``.
        latency_sigma: > 0 makes ``latency_s`` the median of a lognormal latency with this sigma.
        tpm: server-side tokens-per-minute limit (prompt ~chars/4 + max_tokens per request),
            bucket of one second's worth.
        rpm, rps: server-side rate limit (requests per minute / second, token bucket), answered
            with 429 and a Retry-After equal to the time until the next admission.
        burst: bucket size for the rate limit (default: one second's worth, at least 1).
        default_fault: applied to every call that nothing else chose a fault for.
        fault_rates: e.g. ``{"503": 0.05, "timeout": 0.01}``: random faults with these probabilities.
        fault_fn: ``record -> Fault | str | None``, consulted per call after the scripts.
        api_key: when set, requests must carry it (Bearer or x-goog-api-key) or get 401. The 401
            message repeats the key that was sent, as some providers do, so tests can check that
            clients scrub it.
        models: model names listed by ``GET /v1/models`` and accepted (None: any model).
        refusal_text: the text of a refusal fault.
        rules: refuse what the real APIs refuse (capability errors, retired models, real key-error
            bodies; :class:`~.provider_rules.ProviderRules`); None accepts any request.
        seed: seeds jitter and random faults.
        batch: how simulated batch jobs progress and fail (OpenAI Batch and Gemini batch mode,
            :mod:`.batch_jobs`); the jobs and files are :attr:`batches`.
        pairwise: how the default responder decides pairwise prompts (``first``: always Reply A, a
            pure position bias; ``second``; ``content``: a consistent judge; None: the verdict
            follows the prompt's hash; :mod:`.schema_fill`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        responder: Responder | None = None,
        latency_s: float = 0.0,
        jitter_s: float = 0.0,
        latency_sigma: float = 0.0,
        tpm: float | None = None,
        rpm: float | None = None,
        rps: float | None = None,
        burst: float | None = None,
        default_fault: Fault | str | int | None = None,
        fault_rates: dict[str, float] | None = None,
        fault_fn: Callable[[RequestRecord], Fault | str | int | None] | None = None,
        api_key: str | None = None,
        models: Sequence[str] | None = None,
        refusal_text: str = "I can't help with that request.",
        rules: ProviderRules | None = None,
        seed: int = 0,
        batch: BatchSettings | None = None,
        pairwise: str | None = None,
    ) -> None:
        if rpm is not None and rps is not None:
            raise ValueError("give rpm or rps, not both")
        if pairwise is not None and pairwise not in PAIRWISE_RULES:
            raise ValueError(f"pairwise must be one of {PAIRWISE_RULES}, got {pairwise!r}")
        self.pairwise = pairwise
        self.host = host
        self._requested_port = port
        self.responder = responder or default_responder
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.latency_sigma = latency_sigma
        self._tpm_bucket = TokenBucket(tpm / 60.0, tpm / 60.0) if tpm else None
        rate = rps if rps is not None else (rpm / 60.0 if rpm is not None else None)
        self._bucket = TokenBucket(rate, burst if burst is not None else max(1.0, rate)) if rate else None
        self.default_fault = Fault.parse(default_fault) if default_fault is not None else None
        self.fault_rates = {k: float(v) for k, v in (fault_rates or {}).items()}
        self.fault_fn = fault_fn
        self.api_key = api_key
        self.models = list(models) if models is not None else None
        self.refusal_text = refusal_text
        self.rules = rules
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._script: deque[Fault] = deque()
        self._match_scripts: list[tuple[str, deque[Fault]]] = []
        self._in_flight = 0
        self._peak_in_flight = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.port: int = port
        self.batches = BatchBook(self, batch)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultServer:
        """Start serving in a background thread; returns once the port is bound."""
        if self._thread is not None:
            return self
        sock = self._bind()
        self._thread = threading.Thread(target=self._serve_thread, args=(sock,), name=f"fault-server-{self.port}", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._start_error is not None:
            raise RuntimeError(f"fault server failed to start: {self._start_error}") from self._start_error
        return self

    def stop(self) -> None:
        """Stop serving (hung calls are cancelled) and join the thread."""
        if self._thread is None or self._loop is None:
            return
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        self._thread = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bind(self) -> socket.socket:
        """Bind and listen before serving, so :attr:`port` is known (and taken) once this returns."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(1024)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        return sock

    def _serve_thread(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._start_error = exc
            self._started.set()
        finally:
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/chat/completions", self._openai)
        app.router.add_get("/v1/models", self._list_models)
        openai_batch.add_routes(app, self)
        gemini_batch.add_routes(app, self)  # before the generic models/{model}:{action} route
        app.router.add_post("/{version}/models/{model_action}", self._gemini)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._started.set()
        await self._stop.wait()
        await self._runner.cleanup()

    async def serve_forever(self) -> None:
        """Serve in the current event loop until cancelled (used by the CLI)."""
        sock = self._bind()
        self._loop = asyncio.get_running_loop()
        await self._serve(sock)

    # ---- addresses --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` (the Gemini base URL: google-genai appends ``/v1beta/models/...``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``http://host:port/v1`` (the OpenAI SDK appends ``/chat/completions``)."""
        return f"{self.base_url}/v1"

    gemini_base_url = base_url

    def engine_config(self, backend: str = "openai", model: str = "fault-model", **fields: Any) -> Any:
        """An :class:`~mentalchat.engine.config.EngineConfig` pointing at this server.

        HTTP options default to test-friendly values (5 s timeout, 10-200 ms backoff, 3 retries);
        ``http={...}`` and any other EngineConfig field override them.
        """
        from mentalchat.engine.config import EngineConfig

        http = {"timeout_s": 5.0, "backoff_base_s": 0.01, "backoff_max_s": 0.2, "max_retries": 3}
        http.update(fields.pop("http", {}) or {})
        base = self.openai_base_url if backend == "openai" else self.base_url
        return EngineConfig(backend=backend, model=model, base_url=base, http=http, **fields)

    # ---- scripting and records ----------------------------------------------------------------

    def script(self, faults: Iterable[Fault | str | int | None], *, match: str | None = None) -> None:
        """Queue faults for the next calls (``None`` = answer normally).

        With ``match``, the queue is consumed only by calls whose message text contains ``match``
        (in arrival order among those), which keeps concurrent tests deterministic.
        """
        parsed = [Fault.parse(f) for f in faults]
        with self._lock:
            if match is None:
                self._script.extend(parsed)
            else:
                for key, queue in self._match_scripts:
                    if key == match:
                        queue.extend(parsed)
                        break
                else:
                    self._match_scripts.append((match, deque(parsed)))

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the records so far, in arrival order."""
        with self._lock:
            return list(self._records)

    def count(self, *, status: int | None = None, protocol: str | None = None, match: str | None = None) -> int:
        """How many requests were seen, optionally only those with a status / protocol / text."""
        return len(self.matching(status=status, protocol=protocol, match=match))

    def matching(
        self, *, status: int | None = None, protocol: str | None = None, match: str | None = None
    ) -> list[RequestRecord]:
        """The records seen so far that have this status / protocol / text (arrival order)."""
        out: list[RequestRecord] = []
        for r in self.requests:
            if status is not None and r.status != status:
                continue
            if protocol is not None and r.protocol != protocol:
                continue
            if match is not None and match not in r.prompt:
                continue
            out.append(r)
        return out

    @property
    def peak_in_flight(self) -> int:
        """The most requests handled at once since the start (or the last :meth:`reset`)."""
        with self._lock:
            return self._peak_in_flight

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        with self._lock:
            return self._in_flight

    def reset(self) -> None:
        """Forget records, scripts and the in-flight peak (settings are kept)."""
        with self._lock:
            self._records.clear()
            self._script.clear()
            self._match_scripts.clear()
            self._peak_in_flight = self._in_flight

    # ---- request handling ---------------------------------------------------------------------

    def _begin(self, request: web.Request, protocol: str, model: str | None, body: Any) -> RequestRecord:
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in _SECRET_HEADERS}
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            rec = RequestRecord(
                index=len(self._records),
                protocol=protocol,
                method=request.method,
                path=request.path,
                model=model,
                headers=headers,
                body=body,
                t_start=time.monotonic(),
                in_flight=self._in_flight,
            )
            self._records.append(rec)
        return rec

    def _end(self, rec: RequestRecord, status: int) -> None:
        with self._lock:
            self._in_flight -= 1
            rec.t_end = time.monotonic()
            rec.status = status

    def _choose_fault(self, rec: RequestRecord) -> Fault:
        prompt = rec.prompt
        with self._lock:
            for key, queue in self._match_scripts:
                if queue and key in prompt:
                    return queue.popleft()
            if self._script:
                return self._script.popleft()
        if self.fault_fn is not None:
            chosen = self.fault_fn(rec)
            if chosen is not None:
                return Fault.parse(chosen)
        if self.fault_rates:
            with self._lock:
                u = self._rng.random()
            acc = 0.0
            for spec, p in self.fault_rates.items():
                acc += p
                if u < acc:
                    return Fault.parse(spec)
        return self.default_fault or Fault("ok")

    def _sent_key(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:]
        return request.headers.get("x-goog-api-key") or request.query.get("key")

    async def _read_body(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return raw.decode("utf-8", "replace")

    async def _list_models(self, request: web.Request) -> web.Response:
        rec = self._begin(request, "models", None, None)
        names = self.models or ["fault-model"]
        data = openai_protocol.models_payload(names)
        self._end(rec, 200)
        return web.json_response(data)

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_body(request)
        model = body.get("model") if isinstance(body, dict) else None
        return await self._handle(request, "openai", model, body)

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        model_action = request.match_info["model_action"]
        model, _, action = model_action.partition(":")
        body = await self._read_body(request)
        if action != "generateContent":
            rec = self._begin(request, "gemini", model, body)
            self._end(rec, 404)
            return self._error("gemini", 404, f"unsupported method {action!r}", None)
        return await self._handle(request, "gemini", model, body)

    async def _handle(self, request: web.Request, protocol: str, model: str | None, body: Any) -> web.StreamResponse:
        rec = self._begin(request, protocol, model, body)
        status = 500
        try:
            response, status = await self._respond(request, rec, protocol, model, body)
            return response
        except asyncio.CancelledError:
            status = 499  # client went away (e.g. its timeout fired)
            raise
        finally:
            self._end(rec, status)

    async def _respond(
        self, request: web.Request, rec: RequestRecord, protocol: str, model: str | None, body: Any
    ) -> tuple[web.StreamResponse, int]:
        if self.api_key is not None:
            sent = self._sent_key(request)
            if sent != self.api_key:
                rec.fault = "unauthorized"
                if self.rules is not None and self.rules.real_key_errors:
                    status, err_body = bad_key_error(protocol, sent)
                    return web.json_response(err_body, status=status), status
                msg = f"Incorrect API key provided: {sent}" if sent else "No API key provided"
                return self._error(protocol, 401, msg, None), 401
        if not isinstance(body, dict):
            rec.fault = "bad_request"
            return self._error(protocol, 400, "request body is not a JSON object", None), 400
        if self.models is not None and model not in self.models:
            rec.fault = "not_found"
            return self._error(protocol, 404, f"model {model!r} does not exist", None), 404
        if self.rules is not None:
            refusal = self.rules.check(protocol, model, body)
            if refusal is not None:
                status, err_body = refusal
                rec.fault = "capability" if status == 400 else "retired"
                return web.json_response(err_body, status=status), status
        if self._bucket is not None:
            with self._lock:
                wait = self._bucket.try_take()
            if wait > 0:
                retry_after = math.ceil(wait * 1000) / 1000
                rec.rate_limited = True
                rec.fault = "rate_limit"
                rec.retry_after_s = retry_after
                return self._error(protocol, 429, "Rate limit reached; retry later", retry_after), 429

        if self._tpm_bucket is not None:
            wanted = self._admission_tokens(protocol, body)
            with self._lock:
                wait = self._tpm_bucket.try_take(wanted)
            if wait > 0:
                retry_after = math.ceil(wait * 1000) / 1000
                rec.rate_limited = True
                rec.fault = "rate_limit"
                rec.retry_after_s = retry_after
                limit = int(self._tpm_bucket.rate * 60)
                msg = (f"Rate limit reached for {model} on tokens per min (TPM): Limit {limit}, Requested {wanted}. "
                       f"Please try again in {int(retry_after * 1000)}ms.")
                return self._error(protocol, 429, msg, retry_after, code="rate_limit_exceeded"), 429

        fault = self._choose_fault(rec)
        rec.fault = fault.kind
        base = self.latency_s
        if self.latency_sigma > 0 and base > 0:
            with self._lock:
                base = min(base * self._rng.lognormvariate(0.0, self.latency_sigma), 20 * self.latency_s)
        delay = base + (self._rng.uniform(0, self.jitter_s) if self.jitter_s else 0.0)
        if fault.kind == "timeout":
            delay += fault.hang_s
        rec.delay_s = delay
        if delay > 0:
            await asyncio.sleep(delay)

        if fault.kind == "quota":
            status, err_body = quota_error(protocol, model)
            return web.json_response(err_body, status=status), status
        if fault.kind == "rate_limit":
            ra = fault.retry_after_s if fault.retry_after_s is not None else 1.0
            rec.retry_after_s = ra
            msg = fault.message or "Rate limit reached; retry later"
            return self._error(protocol, 429, msg, ra, header=fault.retry_after_header, code=fault.code), 429
        if fault.kind == "error":
            st = fault.http_status
            rec.retry_after_s = fault.retry_after_s
            msg = fault.message or f"injected error {st}"
            return self._error(protocol, st, msg, fault.retry_after_s, header=fault.retry_after_header, code=fault.code), st

        messages = _messages_of(protocol, body)
        params = self._params(protocol, model, body)
        if fault.kind in ("refusal", "blocked"):
            text = fault.message or self.refusal_text
            rec.text = None
            payload = self._payload(protocol, model, messages, None, "refusal", refusal=text)
            if fault.kind == "blocked" and protocol == "gemini":
                payload = gemini_protocol.blocked_payload(payload)
        else:
            try:
                text = (fault.message or self.refusal_text) if fault.kind == "refusal_text" else self.responder(messages, params)
            except Exception as exc:  # noqa: BLE001 - a broken test responder answers 500, visibly
                rec.fault = "responder_error"
                return self._error(protocol, 500, f"responder failed: {type(exc).__name__}: {exc}", None), 500
            finish = "stop"
            words = text.split()
            max_tokens = params.get("max_tokens")
            if fault.kind == "length":
                text = " ".join(words[: max(1, len(words) // 2)])
                finish = "length"
            elif max_tokens is not None and len(words) > int(max_tokens):
                text = " ".join(words[: int(max_tokens)])
                finish = "length"
            rec.text = text
            payload = self._payload(protocol, model, messages, text, finish)

        raw = json.dumps(payload).encode()
        if fault.kind == "invalid_json":
            return web.Response(status=200, body=b"<html>upstream proxy error: not json {", content_type="application/json"), 200
        if fault.kind == "truncated_json":
            return web.Response(status=200, body=raw[: len(raw) // 2], content_type="application/json"), 200
        if fault.kind == "disconnect":
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.content_length = len(raw)
            await resp.prepare(request)
            await resp.write(raw[: len(raw) // 2])
            if request.transport is not None:
                request.transport.abort()
            return resp, 200
        return web.Response(status=200, body=raw, content_type="application/json"), 200

    def _admission_tokens(self, protocol: str, body: dict[str, Any]) -> int:
        """What a request counts against a TPM limit when it arrives: prompt (~4 chars/token) + max_tokens."""
        chars = sum(len(m["content"]) for m in _messages_of(protocol, body))
        max_tokens = self._params(protocol, None, body).get("max_tokens") or 0
        return math.ceil(chars / 4) + int(max_tokens)

    def _params(self, protocol: str, model: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """What the responder is told about the request (see :mod:`.schema_fill`)."""
        params: dict[str, Any] = {"protocol": protocol, "model": model, "body": body, "json_schema": None,
                                  "json_mode": False, "pairwise": self.pairwise}
        if protocol == "openai":
            params.update(openai_protocol.request_params(body))
        else:
            params.update(gemini_protocol.request_params(body))
        return params

    def _payload(
        self,
        protocol: str,
        model: str | None,
        messages: list[dict[str, str]],
        text: str | None,
        finish: str,
        *,
        refusal: str | None = None,
    ) -> dict[str, Any]:
        """The 200 body for ``text`` (``finish``: stop, length or refusal), usage counted here for both protocols."""
        n_in = sum(_count_tokens(m["content"]) for m in messages)
        n_out = _count_tokens(text or "")
        if protocol == "openai":
            return openai_protocol.response_payload(model, text, finish, refusal, n_in, n_out)
        return gemini_protocol.response_payload(model, text, finish, n_in, n_out)

    def _error(
        self,
        protocol: str,
        status: int,
        message: str,
        retry_after: float | None,
        *,
        header: bool = True,
        code: str | None = None,
    ) -> web.Response:
        """An error response in the protocol's shape; ``retry_after`` also as headers unless ``header=False``."""
        headers: dict[str, str] = {}
        if retry_after is not None and header:
            headers["Retry-After"] = _fmt_seconds(retry_after)
            headers["retry-after-ms"] = str(int(round(retry_after * 1000)))
        if protocol == "gemini":
            body = gemini_protocol.error_body(status, message, retry_after)
        else:
            body = openai_protocol.error_body(status, message, code)
        return web.json_response(body, status=status, headers=headers)
