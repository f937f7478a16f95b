"""The OpenAI chat-completions wire format, as the ``openai`` SDK sends and parses it.

Why apart from the server: what a request means and what a response looks like is the part that
must match the real API; keeping it in plain functions over dicts lets it be read against the API
reference without the HTTP plumbing around it.

Endpoints
---------
``POST /v1/chat/completions`` (and ``/chat/completions``)
    OpenAI chat completions (``usage``, ``finish_reason``; ``response_format`` of type
    ``json_schema`` or ``json_object`` is honoured by answering JSON that matches the schema).
``GET /v1/models``
    The configured model names (OpenAI list shape).

Errors are ``{"error": {"message", "type", "param", "code"}}``; a 429 has type and code
``rate_limit_exceeded`` unless the fault names another ``code`` (e.g. ``insufficient_quota``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any


def messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """``messages`` as role/content dicts (content parts joined into one string)."""
    out: list[dict[str, str]] = []
    for m in body.get("messages") or []:
        content = m.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        out.append({"role": str(m.get("role", "user")), "content": str(content or "")})
    return out


def request_params(body: dict[str, Any]) -> dict[str, Any]:
    """The responder's ``params`` read from an OpenAI body (json_schema/json_mode only when asked)."""
    params: dict[str, Any] = {"max_tokens": body.get("max_completion_tokens", body.get("max_tokens"))}
    for k in ("temperature", "top_p", "seed", "stop"):
        params[k] = body.get(k)
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        params["json_schema"] = (rf.get("json_schema") or {}).get("schema") or {}
    elif rf.get("type") == "json_object":
        params["json_mode"] = True
    return params


def response_payload(
    model: str | None, text: str | None, finish: str, refusal: str | None, n_in: int, n_out: int
) -> dict[str, Any]:
    """A ``chat.completion`` object; ``finish="refusal"`` answers ``message.refusal`` with null content."""
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


def models_payload(names: Sequence[str]) -> dict[str, Any]:
    """The ``GET /v1/models`` list."""
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "fault-server"} for n in names]}


def error_body(status: int, message: str, code: str | None) -> dict[str, Any]:
    """An OpenAI error body (the SDK maps the status to its exception class, the body to its message)."""
    kind = {429: "rate_limit_exceeded", 401: "invalid_request_error", 400: "invalid_request_error"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code or (kind if status == 429 else None)}}
