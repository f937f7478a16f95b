"""A local, fault-injecting HTTP server that speaks the OpenAI and Gemini REST protocols.

Why: the API backends, the judges and the throughput benchmarks must be tested with the real
``openai`` and ``google-genai`` clients over real HTTP, including the failures that matter in
production (rate limits, 5xx, hangs, broken bodies, refusals, truncation), without a network or a
key. This server answers both protocols on 127.0.0.1, injects faults on demand and records every
request so tests can assert what was sent and how often.

Endpoints
---------
``POST /v1/chat/completions``
    OpenAI chat completions (``usage``, ``finish_reason``; ``response_format`` of type
    ``json_schema`` or ``json_object`` is honoured by answering JSON that matches the schema).
``GET /v1/models``
    The configured model names (OpenAI list shape).
``POST /{api_version}/models/{model}:generateContent``
    Gemini (what google-genai posts to): ``candidates[0].content.parts[0].text``,
    ``finishReason``, ``usageMetadata``; ``generationConfig.responseJsonSchema`` /
    ``responseSchema`` with ``responseMimeType: application/json`` are honoured.

Responses
---------
A *responder* ``(messages, params) -> str`` writes the answer text. ``messages`` is a list of
``{"role": "system"|"user"|"assistant", "content": str}`` whatever the protocol; ``params`` holds
``protocol`` ("openai"/"gemini"), ``model``, ``max_tokens``, ``temperature``, ``top_p``, ``seed``,
``json_schema`` (the requested schema or None), ``json_mode`` (JSON without a schema) and ``body``
(the raw request). The default responder (:func:`default_responder`) echoes the last user message,
or, when a schema is requested, fills it with values derived from a hash of the prompt (the same
prompt always gets the same JSON; different prompts get different scores).

Token counts are whitespace-separated words (prompt: all message contents; completion: the answer).
When the answer has more words than ``max_tokens`` it is cut and ``finish_reason`` is ``length``.

Faults
------
A :class:`Fault` says what to do with one call instead of (or on top of) a normal answer. Kinds:

========================  ====================================================================
``rate_limit``            429 with ``Retry-After`` (seconds, may be fractional) and ``retry-after-ms``
``error``                 an HTTP error with ``status`` (default 500); ``server_error`` = 500,
                          ``unavailable`` = 503, ``bad_request`` = 400, ``unauthorized`` = 401,
                          ``forbidden`` = 403
``timeout``               hang ``hang_s`` seconds (default 3600) before answering normally
``invalid_json``          200 with a body that is not JSON
``truncated_json``        200 with the first half of the JSON body (Content-Length matches it)
``disconnect``            announces the full body, sends half, then drops the connection
``refusal``               a protocol-level refusal (OpenAI ``message.refusal`` with null content;
                          Gemini ``finishReason: SAFETY`` with no parts)
``blocked``               Gemini: the prompt itself is blocked (``promptFeedback.blockReason``
                          ``SAFETY``, no candidates); OpenAI: the same as ``refusal``
``refusal_text``          a normal 200 answer whose text is a refusal sentence (``refusal_text``)
``length``                a normal answer cut to half its words with ``finish_reason`` length
``ok``                    answer normally (useful in scripts)
========================  ====================================================================

A fault's other fields: ``retry_after_s`` (429, or any error that should carry Retry-After),
``retry_after_header=False`` (state the delay only in the body, as Gemini's ``RetryInfo`` does),
``hang_s`` (timeout), ``message`` (error or refusal text), ``code`` (OpenAI error code, e.g.
``insufficient_quota``). Shorthands accepted wherever a fault is: ``None``/"ok", a kind name, an
HTTP status (``429``, ``"503"``) or an alias (``server_error``, ``unavailable``, ``bad_request``,
``unauthorized``, ``forbidden``, ``not_found``).

Faults are chosen per call in this order: a scripted fault queued for a prompt containing some
marker text (:meth:`FaultServer.script` with ``match=``), the next fault of the global script,
``fault_fn(record)`` if given, a random fault drawn from ``fault_rates`` (seeded), then
``default_fault``. Scripts are the way to make concurrent tests deterministic: a fault queued with
``match="q7"`` hits the first call(s) whose messages mention ``q7``, whatever the arrival order.

A configured rate limit (``rpm`` or ``rps``, a token bucket holding ``burst`` requests) answers
429 + ``Retry-After`` (the time until a request would be admitted) before any latency or fault.
Latency is ``latency_s + uniform(0, jitter_s)`` per answered call.

Records
-------
Every request is kept as a :class:`RequestRecord` (arrival/finish times on ``time.monotonic()``,
headers without credentials, the parsed body, the fault applied, the status, how many requests were
in flight on arrival). With an in-process server the clock is the test's own, so tests can check
e.g. that a retry came no earlier than the ``Retry-After`` it was given.

Use
---
In tests::

    with FaultServer(latency_s=0.01) as srv:
        srv.script(["429", None, "500"])           # the next three calls
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="x")
        ...
        assert srv.count(status=429) == 1

    # or through the engine layer, with test-friendly timeouts and backoff:
    with FaultServer() as srv, create_engine(srv.engine_config("gemini")) as engine:
        results = engine.chat_batch(requests)

From a shell (for benchmarks or manual checks)::

    python -m mentalchat.testing.fault_server --port 8765 --rps 20 --latency-ms 50 --fault 503=0.05
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import random
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiohttp import web

__all__ = [
    "Fault",
    "FaultServer",
    "RequestRecord",
    "Responder",
    "default_responder",
    "fill_schema",
]

Responder = Callable[[list[dict[str, str]], dict[str, Any]], str]

# Header names never recorded (credentials of either protocol).
_SECRET_HEADERS = {"authorization", "x-goog-api-key", "api-key", "x-api-key", "proxy-authorization", "cookie"}

_ERROR_STATUS = {
    "server_error": 500,
    "unavailable": 503,
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
}
_KINDS = {
    "ok",
    "rate_limit",
    "error",
    "timeout",
    "invalid_json",
    "truncated_json",
    "disconnect",
    "refusal",
    "blocked",
    "refusal_text",
    "length",
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to do with one call. See the module docstring for the kinds."""

    kind: str = "ok"
    status: int | None = None  # for kind="error"
    retry_after_s: float | None = None  # for kind="rate_limit" (also sent with 503 if set)
    hang_s: float = 3600.0  # for kind="timeout"
    message: str | None = None  # error message or refusal text
    retry_after_header: bool = True  # False: state the delay only in the body (Gemini's RetryInfo)
    code: str | None = None  # OpenAI error "code" (e.g. "insufficient_quota")

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {sorted(_KINDS)}")

    @classmethod
    def parse(cls, spec: Fault | str | int | None) -> Fault:
        """``None``/"ok", a kind name, an HTTP status (``429``, ``"503"``) or an error alias."""
        if spec is None:
            return cls("ok")
        if isinstance(spec, Fault):
            return spec
        if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
            status = int(spec)
            if status == 429:
                return cls("rate_limit", retry_after_s=1.0)
            return cls("error", status=status)
        if spec in _ERROR_STATUS:
            return cls("error", status=_ERROR_STATUS[spec])
        if spec == "rate_limit":
            return cls("rate_limit", retry_after_s=1.0)
        return cls(spec)

    @property
    def http_status(self) -> int:
        if self.kind == "rate_limit":
            return 429
        if self.kind == "error":
            return self.status or 500
        return 200


@dataclasses.dataclass
class RequestRecord:
    """One request as the server saw it."""

    index: int  # arrival order, from 0
    protocol: str  # "openai" | "gemini" | "models"
    method: str
    path: str
    model: str | None
    headers: dict[str, str]  # credentials removed
    body: Any  # parsed JSON (or the raw text when it was not JSON)
    t_start: float  # time.monotonic() on arrival
    in_flight: int  # requests being handled on arrival, this one included
    t_end: float | None = None
    status: int | None = None
    fault: str = "ok"
    rate_limited: bool = False
    retry_after_s: float | None = None
    text: str | None = None  # the answer text, when one was produced

    @property
    def prompt(self) -> str:
        """All message text of the request joined (handy for ``match`` checks in tests)."""
        return "\n".join(m["content"] for m in _messages_of(self.protocol, self.body))


# --------------------------------------------------------------------------------------------
# Default responder and schema filler


def _hash_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def fill_schema(schema: dict[str, Any], seed: str = "", *, _root: dict[str, Any] | None = None, _path: str = "$") -> Any:
    """A value that validates against ``schema`` (JSON Schema or Gemini's OpenAPI subset).

    Deterministic in ``seed``: numbers are drawn inside ``minimum``/``maximum`` from a hash of the
    seed and the path, enums pick a member the same way, objects fill every property.
    """
    root = _root if _root is not None else schema
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return fill_schema(target, seed, _root=root, _path=_path)
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if schema.get("enum"):
        options = schema["enum"]
        return copy.deepcopy(options[_hash_int(seed, _path) % len(options)])
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            if key == "allOf":
                merged: dict[str, Any] = {}
                for sub in schema[key]:
                    merged.update(sub)
                return fill_schema(merged, seed, _root=root, _path=_path)
            return fill_schema(schema[key][0], seed, _root=root, _path=_path)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if str(t).lower() != "null"), typ[0] if typ else None)
    typ = str(typ).lower() if typ is not None else ("object" if "properties" in schema else "string")
    if typ == "object":
        props = schema.get("properties") or {}
        return {
            name: fill_schema(sub, seed, _root=root, _path=f"{_path}.{name}") for name, sub in props.items()
        }
    if typ == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        if "maxItems" in schema:
            n = min(n, int(schema["maxItems"]))
        items = schema.get("items") or {"type": "string"}
        return [fill_schema(items, seed, _root=root, _path=f"{_path}[{i}]") for i in range(n)]
    if typ in ("integer", "number"):
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
            lo = schema["exclusiveMinimum"] + (1 if typ == "integer" else 1e-6)
        if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
            hi = schema["exclusiveMaximum"] - (1 if typ == "integer" else 1e-6)
        lo = float(lo) if lo is not None else 0.0
        hi = float(hi) if hi is not None else lo + 100.0
        if typ == "integer":
            lo_i, hi_i = math.ceil(lo), math.floor(hi)
            return lo_i + _hash_int(seed, _path) % max(hi_i - lo_i + 1, 1)
        frac = (_hash_int(seed, _path) % 10_000) / 10_000
        return round(lo + frac * (hi - lo), 4)
    if typ == "boolean":
        return bool(_hash_int(seed, _path) % 2)
    if typ == "null":
        return None
    text = f"filler {_path.rsplit('.', 1)[-1]} {_hash_int(seed, _path) % 1000}"
    min_len = int(schema.get("minLength", 0))
    if len(text) < min_len:
        text = text + "x" * (min_len - len(text))
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text


def default_responder(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """Echo the last user message; with a schema, JSON filling it (deterministic per prompt)."""
    prompt = "\n".join(m["content"] for m in messages)
    if params.get("json_schema") is not None:
        return json.dumps(fill_schema(params["json_schema"], prompt), ensure_ascii=False)
    if params.get("json_mode"):
        return json.dumps({"echo": messages[-1]["content"] if messages else ""}, ensure_ascii=False)
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return f"echo: {last_user}"


def _count_tokens(text: str) -> int:
    return len(text.split())


def _messages_of(protocol: str, body: Any) -> list[dict[str, str]]:
    """The request's messages as role/content dicts, whatever the protocol."""
    if not isinstance(body, dict):
        return []
    out: list[dict[str, str]] = []
    if protocol == "openai":
        for m in body.get("messages") or []:
            content = m.get("content")
            if isinstance(content, list):  # content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            out.append({"role": str(m.get("role", "user")), "content": str(content or "")})
    elif protocol == "gemini":
        sys_inst = body.get("systemInstruction") or body.get("system_instruction")
        if sys_inst:
            parts = sys_inst.get("parts", []) if isinstance(sys_inst, dict) else []
            out.append({"role": "system", "content": "".join(p.get("text", "") for p in parts)})
        for c in body.get("contents") or []:
            role = {"model": "assistant"}.get(c.get("role", "user"), c.get("role", "user"))
            text = "".join(p.get("text", "") for p in c.get("parts", []) if isinstance(p, dict))
            out.append({"role": role, "content": text})
    return out


# --------------------------------------------------------------------------------------------
# The server


class _TokenBucket:
    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate = rate_per_s
        self.capacity = max(burst, 1.0)
        self.tokens = self.capacity
        self.t = time.monotonic()

    def take(self) -> float:
        """Take one token; return 0 when admitted, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class FaultServer:
    """OpenAI + Gemini REST server with scripted faults, rate limits, latency and request records.

    Args:
        host, port: where to listen (port 0: a free port, see :attr:`port`).
        responder: ``(messages, params) -> text``; default :func:`default_responder`.
        latency_s, jitter_s: each answered call waits ``latency_s + uniform(0, jitter_s)``.
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
        seed: seeds jitter and random faults.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        responder: Responder | None = None,
        latency_s: float = 0.0,
        jitter_s: float = 0.0,
        rpm: float | None = None,
        rps: float | None = None,
        burst: float | None = None,
        default_fault: Fault | str | int | None = None,
        fault_rates: dict[str, float] | None = None,
        fault_fn: Callable[[RequestRecord], Fault | str | int | None] | None = None,
        api_key: str | None = None,
        models: Sequence[str] | None = None,
        refusal_text: str = "I can't help with that request.",
        seed: int = 0,
    ) -> None:
        if rpm is not None and rps is not None:
            raise ValueError("give rpm or rps, not both")
        self.host = host
        self._requested_port = port
        self.responder = responder or default_responder
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        rate = rps if rps is not None else (rpm / 60.0 if rpm is not None else None)
        self._bucket = _TokenBucket(rate, burst if burst is not None else max(1.0, rate)) if rate else None
        self.default_fault = Fault.parse(default_fault) if default_fault is not None else None
        self.fault_rates = {k: float(v) for k, v in (fault_rates or {}).items()}
        self.fault_fn = fault_fn
        self.api_key = api_key
        self.models = list(models) if models is not None else None
        self.refusal_text = refusal_text
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

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultServer:
        """Start serving in a background thread; returns once the port is bound."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(1024)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
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
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(1024)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
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
        out = []
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
        data = {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "fault-server"} for n in names]}
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
                msg = f"Incorrect API key provided: {sent}" if sent else "No API key provided"
                return self._error(protocol, 401, msg, None), 401
        if not isinstance(body, dict):
            rec.fault = "bad_request"
            return self._error(protocol, 400, "request body is not a JSON object", None), 400
        if self.models is not None and model not in self.models:
            rec.fault = "not_found"
            return self._error(protocol, 404, f"model {model!r} does not exist", None), 404
        if self._bucket is not None:
            with self._lock:
                wait = self._bucket.take()
            if wait > 0:
                retry_after = math.ceil(wait * 1000) / 1000
                rec.rate_limited = True
                rec.fault = "rate_limit"
                rec.retry_after_s = retry_after
                return self._error(protocol, 429, "Rate limit reached; retry later", retry_after), 429

        fault = self._choose_fault(rec)
        rec.fault = fault.kind
        delay = self.latency_s + (self._rng.uniform(0, self.jitter_s) if self.jitter_s else 0.0)
        if fault.kind == "timeout":
            delay += fault.hang_s
        if delay > 0:
            await asyncio.sleep(delay)

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
                payload = {
                    "promptFeedback": {
                        "blockReason": "SAFETY",
                        "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH",
                                           "blocked": True}],
                    },
                    "usageMetadata": payload["usageMetadata"],
                    "modelVersion": payload["modelVersion"],
                    "responseId": payload["responseId"],
                }
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

    def _params(self, protocol: str, model: str | None, body: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"protocol": protocol, "model": model, "body": body, "json_schema": None, "json_mode": False}
        if protocol == "openai":
            params["max_tokens"] = body.get("max_completion_tokens", body.get("max_tokens"))
            for k in ("temperature", "top_p", "seed", "stop"):
                params[k] = body.get(k)
            rf = body.get("response_format") or {}
            if rf.get("type") == "json_schema":
                params["json_schema"] = (rf.get("json_schema") or {}).get("schema") or {}
            elif rf.get("type") == "json_object":
                params["json_mode"] = True
        else:
            gc = body.get("generationConfig") or {}
            params["max_tokens"] = gc.get("maxOutputTokens")
            params["temperature"] = gc.get("temperature")
            params["top_p"] = gc.get("topP")
            params["seed"] = gc.get("seed")
            params["stop"] = gc.get("stopSequences")
            schema = gc.get("responseJsonSchema") or gc.get("responseSchema")
            if schema is not None:
                params["json_schema"] = schema
            elif gc.get("responseMimeType") == "application/json":
                params["json_mode"] = True
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
        n_in = sum(_count_tokens(m["content"]) for m in messages)
        n_out = _count_tokens(text or "")
        if protocol == "openai":
            return {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model or "fault-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": refusal},
                        "finish_reason": "stop" if finish == "refusal" else finish,
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
            }
        candidate: dict[str, Any] = {
            "index": 0,
            "finishReason": {"stop": "STOP", "length": "MAX_TOKENS", "refusal": "SAFETY"}[finish],
        }
        if finish == "refusal":
            candidate["safetyRatings"] = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]
        else:
            candidate["content"] = {"role": "model", "parts": [{"text": text}]}
        return {
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": n_in, "candidatesTokenCount": n_out, "totalTokenCount": n_in + n_out},
            "modelVersion": model or "fault-model",
            "responseId": uuid.uuid4().hex[:16],
        }

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
        headers: dict[str, str] = {}
        if retry_after is not None and header:
            headers["Retry-After"] = _fmt_seconds(retry_after)
            headers["retry-after-ms"] = str(int(round(retry_after * 1000)))
        if protocol == "gemini":
            body = {"error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "UNKNOWN")}}
            if retry_after is not None:  # the real API states the delay in the body too
                body["error"]["details"] = [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{_fmt_seconds(retry_after)}s"}
                ]
        else:
            kind = {429: "rate_limit_exceeded", 401: "invalid_request_error", 400: "invalid_request_error"}.get(status, "server_error")
            body = {"error": {"message": message, "type": kind, "param": None, "code": code or (kind if status == 429 else None)}}
        return web.json_response(body, status=status, headers=headers)


def _fmt_seconds(s: float) -> str:
    return str(int(s)) if float(s).is_integer() else f"{s:.3f}".rstrip("0")


# --------------------------------------------------------------------------------------------
# CLI


def _parse_fault_rates(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        m = re.fullmatch(r"\s*([\w]+)\s*=\s*([0-9.]+)\s*", item)
        if not m:
            raise SystemExit(f"--fault expects KIND=PROBABILITY (e.g. 503=0.05), got {item!r}")
        Fault.parse(m.group(1))  # validate
        out[m.group(1)] = float(m.group(2))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Local OpenAI/Gemini REST server with injectable faults.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--rpm", type=float, default=None, help="rate limit, requests per minute")
    ap.add_argument("--rps", type=float, default=None, help="rate limit, requests per second")
    ap.add_argument("--burst", type=float, default=None, help="rate-limit bucket size (requests)")
    ap.add_argument("--fault", action="append", default=[], metavar="KIND=P", help="random fault, e.g. 503=0.05, timeout=0.01")
    ap.add_argument("--default-fault", default=None, help="fault for every call, e.g. 500")
    ap.add_argument("--api-key-env", default=None, help="require the key held by this env variable")
    ap.add_argument("--models", default=None, help="comma-separated model names to accept")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import os

    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    srv = FaultServer(
        host=args.host,
        port=args.port,
        latency_s=args.latency_ms / 1000,
        jitter_s=args.jitter_ms / 1000,
        rpm=args.rpm,
        rps=args.rps,
        burst=args.burst,
        default_fault=args.default_fault,
        fault_rates=_parse_fault_rates(args.fault),
        api_key=api_key,
        models=args.models.split(",") if args.models else None,
        seed=args.seed,
    )

    async def run() -> None:
        task = asyncio.create_task(srv.serve_forever())
        while not srv._started.is_set():
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        print(f"fault server listening on {srv.base_url} (OpenAI base URL {srv.openai_base_url})", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
