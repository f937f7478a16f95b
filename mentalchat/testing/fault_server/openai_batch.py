"""The OpenAI Files and Batch endpoints of the fault server, as the ``openai`` SDK uses them.

Endpoints
---------
``POST /v1/files``
    multipart upload (``file``, ``purpose``); a ``File`` object. Batch input needs ``purpose=batch``.
``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``
    the file object; its bytes (input, output and error files alike).
``POST /v1/batches``
    ``{"input_file_id", "endpoint", "completion_window", "metadata"}``; a ``Batch`` object. A
    missing file, another purpose, an endpoint other than ``/v1/chat/completions`` or a window
    other than ``24h`` is a 400; a file with unreadable lines, lines for another URL or method,
    or repeated ``custom_id`` s makes a batch that *fails* validation (``errors.data``), as the
    real API does.
``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``, ``GET /v1/batches`` (``limit``, ``after``)
    retrieve, cancel, list (newest first, cursor pages). google-genai also calls ``/v1/batches``
    (its default API version is ``v1``); those calls are told apart and answered by :mod:`.gemini_batch`.

The state follows the job's clock (:mod:`.batch_jobs`) with ``request_counts``; when a job ends
its ``output_file_id`` (200 lines) and ``error_file_id`` (failed lines, plus ``batch_expired`` /
``batch_cancelled`` errors for the items it never ran) appear, each line
``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mentalchat.testing.fault_server import gemini_batch, openai_protocol
from mentalchat.testing.fault_server.batch_jobs import BatchJob, parse_jsonl

if TYPE_CHECKING:
    from mentalchat.testing.fault_server.server import FaultServer

__all__ = ["add_routes", "batch_object"]

PROTOCOL = "openai_batch"
ENDPOINT = "/v1/chat/completions"
_NOT_RUN = {"expired": ("batch_expired", "This request could not be executed before the completion window expired."),
            "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled.")}


def _file_object(f: Any) -> dict[str, Any]:
    return {"id": f.id, "object": "file", "bytes": len(f.data), "created_at": f.created_at, "filename": f.filename,
            "purpose": f.purpose, "status": "processed", "expires_at": None, "status_details": None}


def _finish_files(srv: FaultServer, job: BatchJob, phase: str) -> None:
    """Write the output and error files once, when the job reaches a terminal phase."""
    if job.output_file_id is not None or job.error_file_id is not None or phase not in ("completed", "expired", "cancelled"):
        return
    done = set(job.finished_items(time.monotonic()))
    out_lines, err_lines = [], []
    for i, item in enumerate(job.items):
        line: dict[str, Any] = {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": item.custom_id}
        if i in done:
            line["response"] = {"status_code": item.status, "request_id": uuid.uuid4().hex, "body": item.payload}
            line["error"] = None
            (out_lines if item.status == 200 else err_lines).append(line)
        else:
            code, message = _NOT_RUN.get(phase, ("batch_expired", "not executed"))
            line["response"] = None
            line["error"] = {"code": code, "message": message}
            err_lines.append(line)
    book = srv.batches
    if out_lines:
        job.output_file_id = book.add_file(f"{job.id}_output.jsonl", "batch_output", _jsonl(out_lines)).id
    if err_lines:
        job.error_file_id = book.add_file(f"{job.id}_error.jsonl", "batch_output", _jsonl(err_lines)).id


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return ("".join(json.dumps(x) + "\n" for x in lines)).encode()


def batch_object(srv: FaultServer, job: BatchJob) -> dict[str, Any]:
    """The ``Batch`` object of a job now."""
    now = time.monotonic()
    phase = job.phase(now)
    _finish_files(srv, job, phase)
    finished = job.finished_items(now)
    failed = sum(1 for i in finished if job.items[i].status != 200)
    if phase in ("expired", "cancelled"):
        failed += len(job.items) - len(finished)
    reached = {p: job.wall(job.t_phase(p)) for p in ("in_progress", "finalizing", "completed", "failed", "expired",
                                                      "cancelling", "cancelled")}
    order = ["validating", "in_progress", "finalizing", "completed"]

    def at(p: str) -> int | None:
        if p in order and phase in order:
            return reached[p] if order.index(phase) >= order.index(p) else None
        if p == "in_progress" and phase in ("expired", "cancelling", "cancelled"):
            return reached[p]
        return reached[p] if p == phase or (p == "cancelling" and phase == "cancelled") else None

    return {
        "id": job.id, "object": "batch", "endpoint": ENDPOINT, "model": job.model,
        "errors": {"object": "list", "data": job.validation_errors} if job.validation_errors else None,
        "input_file_id": job.input_file_id, "completion_window": "24h", "status": phase,
        "output_file_id": job.output_file_id, "error_file_id": job.error_file_id,
        "created_at": job.created_at, "in_progress_at": at("in_progress"),
        "expires_at": job.created_at + 24 * 3600, "finalizing_at": at("finalizing"), "completed_at": at("completed"),
        "failed_at": at("failed"), "expired_at": at("expired"), "cancelling_at": at("cancelling"),
        "cancelled_at": at("cancelled"),
        "request_counts": {"total": len(job.items), "completed": len(finished) - sum(
            1 for i in finished if job.items[i].status != 200), "failed": failed},
        "metadata": job.metadata or None,
    }


def add_routes(app: web.Application, srv: FaultServer) -> None:
    """Register the Files and Batch endpoints on ``app``."""

    async def guarded(request: web.Request, model: str | None, body: Any, handler: Any) -> web.Response:
        rec = srv._begin(request, PROTOCOL, model, body)
        status = 500
        try:
            sent = srv._sent_key(request)
            if srv.api_key is not None and sent != srv.api_key:
                status = 401  # the message repeats the key sent, as online: clients must scrub it
                return web.json_response(openai_protocol.error_body(401, f"Incorrect API key provided: {sent}", None),
                                         status=401)
            status, payload = handler()
            if isinstance(payload, bytes):
                return web.Response(status=status, body=payload, content_type="application/octet-stream")
            return web.json_response(payload, status=status)
        finally:
            srv._end(rec, status)

    def err(status: int, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
        body = openai_protocol.error_body(status, message, None)
        body["error"]["param"] = param
        return status, body

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        file_field = form.get("file")
        purpose = str(form.get("purpose") or "")
        data = file_field.file.read() if hasattr(file_field, "file") else b""
        name = getattr(file_field, "filename", None) or "upload.jsonl"

        def handle() -> tuple[int, dict[str, Any]]:
            if not data:
                return err(400, "'file' is a required property", "file")
            if purpose not in ("batch", "fine-tune", "assistants", "vision", "user_data", "evals"):
                return err(400, f"'{purpose}' is not one of the supported purposes", "purpose")
            return 200, _file_object(srv.batches.add_file(name, purpose, data))

        return await guarded(request, None, {"purpose": purpose, "filename": name, "bytes": len(data)}, handle)

    async def file_get(request: web.Request) -> web.Response:
        fid = request.match_info["file_id"]

        def handle() -> tuple[int, Any]:
            f = srv.batches.files.get(fid)
            return (200, _file_object(f)) if f else err(404, f"No such File object: {fid}", "id")

        return await guarded(request, None, None, handle)

    async def file_content(request: web.Request) -> web.Response:
        fid = request.match_info["file_id"]

        def handle() -> tuple[int, Any]:
            f = srv.batches.files.get(fid)
            return (200, f.data) if f else err(404, f"No such File object: {fid}", "id")

        return await guarded(request, None, None, handle)

    async def create(request: web.Request) -> web.Response:
        body = await srv._read_body(request)

        def handle() -> tuple[int, Any]:
            if not isinstance(body, dict):
                return err(400, "request body is not a JSON object")
            fid = body.get("input_file_id")
            f = srv.batches.files.get(fid) if isinstance(fid, str) else None
            if f is None:
                return err(400, f"Invalid 'input_file_id': '{fid}'. File not found.", "input_file_id")
            if f.purpose != "batch":
                return err(400, f"File {fid} has purpose '{f.purpose}', expected 'batch'.", "input_file_id")
            if body.get("endpoint") != ENDPOINT:
                return err(400, f"Invalid 'endpoint': {body.get('endpoint')!r}; this server batches {ENDPOINT}",
                           "endpoint")
            if body.get("completion_window") != "24h":
                return err(400, "Invalid 'completion_window': only '24h' is supported.", "completion_window")
            lines, errors = parse_jsonl(f.data)
            seen: set[str] = set()
            requests: list[tuple[str, dict[str, Any]]] = []
            model = None
            for ln in lines:
                cid = ln.get("custom_id")
                if not isinstance(cid, str) or not cid:
                    errors.append({"code": "missing_required_parameter", "line": ln["_line"],
                                   "message": "custom_id is required", "param": "custom_id"})
                elif cid in seen:
                    errors.append({"code": "duplicate_custom_id", "line": ln["_line"],
                                   "message": f"The custom_id '{cid}' is not unique.", "param": "custom_id"})
                elif ln.get("method") != "POST" or ln.get("url") != ENDPOINT or not isinstance(ln.get("body"), dict):
                    errors.append({"code": "invalid_request", "line": ln["_line"],
                                   "message": f"each line must POST to {ENDPOINT} with a body", "param": "url"})
                else:
                    seen.add(cid)
                    requests.append((cid, ln["body"]))
                    model = model or ln["body"].get("model")
            if not lines and not errors:
                errors.append({"code": "empty_file", "line": None, "message": "The input file is empty.", "param": None})
            meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
            job = srv.batches.create("openai", model, requests, metadata=meta, input_file_id=fid,
                                     tag=meta.get("mentalchat_tag"), validation_errors=errors)
            return 200, batch_object(srv, job)

        return await guarded(request, None, body, handle)

    async def retrieve(request: web.Request) -> web.Response:
        bid = request.match_info["batch_id"]
        if gemini_batch.is_gemini_call(srv, request):
            return await gemini_batch.handle_get(srv, request)

        def handle() -> tuple[int, Any]:
            job = srv.batches.get(bid)
            return (200, batch_object(srv, job)) if job and job.protocol == "openai" else err(
                404, f"No batch found with id '{bid}'.", "batch_id")

        return await guarded(request, None, None, handle)

    async def cancel(request: web.Request) -> web.Response:
        bid = request.match_info["batch_id"]

        def handle() -> tuple[int, Any]:
            job = srv.batches.get(bid)
            if job is None or job.protocol != "openai":
                return err(404, f"No batch found with id '{bid}'.", "batch_id")
            srv.batches.cancel(job)
            return 200, batch_object(srv, job)

        return await guarded(request, None, None, handle)

    async def listing(request: web.Request) -> web.Response:
        if gemini_batch.is_gemini_call(srv, request):
            return await gemini_batch.handle_list(srv, request)
        limit = max(1, min(100, int(request.query.get("limit", "20"))))
        after = request.query.get("after")

        def handle() -> tuple[int, Any]:
            jobs = srv.batches.listing("openai")
            if after:
                ids = [j.id for j in jobs]
                jobs = jobs[ids.index(after) + 1:] if after in ids else []
            page = jobs[:limit]
            data = [batch_object(srv, j) for j in page]
            return 200, {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None, "has_more": len(jobs) > limit}

        return await guarded(request, None, None, handle)

    app.router.add_post("/v1/files", upload)
    app.router.add_get("/v1/files/{file_id}", file_get)
    app.router.add_get("/v1/files/{file_id}/content", file_content)
    app.router.add_post("/v1/batches", create)
    app.router.add_get("/v1/batches", listing)
    app.router.add_get("/v1/batches/{batch_id}", retrieve)
    app.router.add_post("/v1/batches/{batch_id}/cancel", cancel)
