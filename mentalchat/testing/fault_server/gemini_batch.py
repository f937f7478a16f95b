"""The Gemini batch-mode endpoints of the fault server, as ``google-genai`` ``client.batches`` uses them.

Endpoints
---------
``POST /{version}/models/{model}:batchGenerateContent``
    ``{"batch": {"displayName", "inputConfig": {"requests": {"requests": [{"request", "metadata"}]}}}}``
    (inlined requests; a file source is answered 400 here). Returns a long-running operation
    ``{"name": "batches/{id}", "metadata": <GenerateContentBatch>}``.
``GET /{version}/batches/{id}``, ``POST /{version}/batches/{id}:cancel``, ``GET /{version}/batches``
    the operation now; cancel; list (``operations``, ``nextPageToken``; newest first).

The batch (the operation's ``metadata``) has ``state`` ``BATCH_STATE_PENDING`` (validating),
``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``CANCELLED`` or ``EXPIRED`` (the SDK shows them as
``JOB_STATE_*``) and ``batchStats``; once it succeeded, ``output.inlinedResponses.inlinedResponses``
holds one entry per request in request order: ``{"response": <GenerateContentResponse>}`` or
``{"error": <google.rpc.Status>}``. Like the real service this one does not echo request metadata.
A cancelled batch lists every request (those it never ran as ``CANCELLED`` errors); an expired
one has no output. Errors of the calls themselves are google.rpc error bodies.
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mentalchat.testing.fault_server import gemini_protocol
from mentalchat.testing.fault_server.batch_jobs import BatchJob

if TYPE_CHECKING:
    from mentalchat.testing.fault_server.server import FaultServer

__all__ = ["add_routes", "operation"]

PROTOCOL = "gemini_batch"
_STATE = {"validating": "PENDING", "in_progress": "RUNNING", "finalizing": "RUNNING", "completed": "SUCCEEDED",
          "failed": "FAILED", "expired": "EXPIRED", "cancelling": "RUNNING", "cancelled": "CANCELLED"}
# HTTP statuses as google.rpc codes (what a per-request error carries).
_RPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 500: 13, 501: 12, 503: 14, 504: 4}
_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"


def _ts(wall: int | None) -> str | None:
    if wall is None:
        return None
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat().replace("+00:00", "Z")


def _entry(job: BatchJob, i: int) -> dict[str, Any]:
    item = job.items[i]
    if item.status == 200:
        return {"response": item.payload}
    err = item.payload.get("error", {})
    return {"error": {"code": _RPC_CODE.get(item.status, 2), "message": err.get("message", "error"),
                      "details": []}}


def operation(job: BatchJob) -> dict[str, Any]:
    """The long-running operation of a job now (what create, get and list return)."""
    now = time.monotonic()
    phase = job.phase(now)
    state = _STATE[phase]
    finished = job.finished_items(now)
    n_err = sum(1 for i in finished if job.items[i].status != 200)
    meta: dict[str, Any] = {
        "@type": _TYPE, "model": f"models/{job.model}", "displayName": job.tag or "",
        "state": f"BATCH_STATE_{state}", "createTime": _ts(job.created_at), "updateTime": _ts(job.wall(now)),
        "batchStats": {"requestCount": str(len(job.items)), "successfulRequestCount": str(len(finished) - n_err),
                       "failedRequestCount": str(n_err), "pendingRequestCount": str(len(job.items) - len(finished))},
    }
    op: dict[str, Any] = {"name": job.id, "metadata": meta}
    if state in ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"):
        meta["endTime"] = _ts(job.wall(job.t_phase(phase)))
        op["done"] = True
    if state == "SUCCEEDED":
        output = {"inlinedResponses": {"inlinedResponses": [_entry(job, i) for i in range(len(job.items))]}}
        meta["output"] = output
        op["response"] = {"@type": _TYPE.replace("GenerateContentBatch", "GenerateContentBatchOutput"), **output}
    elif state == "CANCELLED":
        done = set(finished)
        entries = [_entry(job, i) if i in done else {"error": {"code": 1, "message": "batch cancelled"}}
                   for i in range(len(job.items))]
        meta["output"] = {"inlinedResponses": {"inlinedResponses": entries}}
    elif state == "FAILED":
        op["error"] = {"code": 3, "message": "; ".join(e["message"] for e in job.validation_errors) or "batch failed"}
    elif state == "EXPIRED":
        op["error"] = {"code": 4, "message": "the batch expired before it finished"}
    return op


async def _guarded(srv: FaultServer, request: web.Request, model: str | None, body: Any, handler: Any) -> web.Response:
    """Record the call, check the key, answer ``handler()``'s (status, JSON)."""
    rec = srv._begin(request, PROTOCOL, model, body)
    status = 500
    try:
        sent = srv._sent_key(request)
        if srv.api_key is not None and sent != srv.api_key:
            status = 401  # the message repeats the key sent, as online: clients must scrub it
            return web.json_response(gemini_protocol.error_body(401, f"API key not valid: {sent}", None), status=401)
        status, payload = handler()
        return web.json_response(payload, status=status)
    finally:
        srv._end(rec, status)


def _err(status: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, gemini_protocol.error_body(status, message, None)


def is_gemini_call(srv: FaultServer, request: web.Request) -> bool:
    """True when a ``/v1/batches...`` call is Gemini's (google-genai defaults to ``v1``, as OpenAI does)."""
    bid = request.match_info.get("batch_id")
    if bid is not None:
        return srv.batches.get(bid) is None and srv.batches.get(f"batches/{bid}") is not None
    return "x-goog-api-key" in request.headers or "pageSize" in request.query


async def handle_get(srv: FaultServer, request: web.Request) -> web.Response:
    name = f"batches/{request.match_info['batch_id']}"

    def handle() -> tuple[int, Any]:
        job = srv.batches.get(name)
        return (200, operation(job)) if job else _err(404, f"Batch {name} not found")

    return await _guarded(srv, request, None, None, handle)


async def handle_list(srv: FaultServer, request: web.Request) -> web.Response:
    size = max(1, min(100, int(request.query.get("pageSize", "50"))))
    start = int(request.query.get("pageToken") or 0)

    def handle() -> tuple[int, Any]:
        jobs = srv.batches.listing("gemini")
        page = jobs[start:start + size]
        out: dict[str, Any] = {"operations": [operation(j) for j in page]}
        if start + size < len(jobs):
            out["nextPageToken"] = str(start + size)
        return 200, out

    return await _guarded(srv, request, None, None, handle)


def add_routes(app: web.Application, srv: FaultServer) -> None:
    """Register the batch endpoints: before the generic ``models/{model}:{action}`` route, after
    OpenAI's ``/v1/batches`` routes (which hand Gemini's ``v1`` calls here: :func:`is_gemini_call`)."""

    async def create(request: web.Request) -> web.Response:
        model = request.match_info["model"]
        body = await srv._read_body(request)

        def handle() -> tuple[int, Any]:
            batch = body.get("batch") if isinstance(body, dict) else None
            if not isinstance(batch, dict):
                return _err(400, "Invalid JSON payload: 'batch' is required")
            src = batch.get("inputConfig") or {}
            if "fileName" in src:
                return _err(400, "this fault server takes inlined requests only")
            entries = ((src.get("requests") or {}).get("requests")) or []
            if not entries:
                return _err(400, "batch.input_config.requests must not be empty")
            requests: list[tuple[str, dict[str, Any]]] = []
            for i, entry in enumerate(entries):
                req = entry.get("request") if isinstance(entry, dict) else None
                if not isinstance(req, dict) or not req.get("contents"):
                    return _err(400, f"requests[{i}].request.contents is required")
                requests.append((str(i), req))
            if srv.models is not None and model not in srv.models:
                return _err(404, f"models/{model} is not found for API version v1beta")
            job = srv.batches.create("gemini", model, requests, tag=batch.get("displayName"))
            return 200, operation(job)

        return await _guarded(srv, request, model, body, handle)

    async def cancel(request: web.Request) -> web.Response:
        name = f"batches/{request.match_info['batch_id']}"

        def handle() -> tuple[int, Any]:
            job = srv.batches.get(name)
            if job is None:
                return _err(404, f"Batch {name} not found")
            srv.batches.cancel(job)
            return 200, {}

        return await _guarded(srv, request, None, None, handle)

    async def get(request: web.Request) -> web.Response:
        return await handle_get(srv, request)

    async def listing(request: web.Request) -> web.Response:
        return await handle_list(srv, request)

    app.router.add_post("/{version}/models/{model}:batchGenerateContent", create)
    app.router.add_post("/{version}/batches/{batch_id}:cancel", cancel)
    app.router.add_get("/{version}/batches/{batch_id}", get)
    app.router.add_get("/{version}/batches", listing)
