"""The Gemini ``generateContent`` REST wire format, as ``google-genai`` sends and parses it.

Why apart from the server: what a request means and what a response looks like is the part that
must match the real API; keeping it in plain functions over dicts lets it be read against the API
reference without the HTTP plumbing around it.

Endpoint
--------
``POST /{api_version}/models/{model}:generateContent``
    Gemini (what google-genai posts to): ``candidates[0].content.parts[0].text``,
    ``finishReason``, ``usageMetadata``; ``generationConfig.responseJsonSchema`` /
    ``responseSchema`` with ``responseMimeType: application/json`` are honoured.

A refusal is ``finishReason: SAFETY`` with no parts; a blocked prompt is
``promptFeedback.blockReason: SAFETY`` with no candidates. Errors are
``{"error": {"code", "message", "status"}}`` with the google.rpc status name; a delay is also
stated in the body as a ``RetryInfo`` detail, as the real API does.
"""

from __future__ import annotations

import uuid
from typing import Any

from mentalchat.testing.fault_server.faults import _fmt_seconds

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


def messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """``systemInstruction`` and ``contents`` as role/content dicts (``model`` becomes ``assistant``)."""
    out: list[dict[str, str]] = []
    sys_inst = body.get("systemInstruction") or body.get("system_instruction")
    if sys_inst:
        parts = sys_inst.get("parts", []) if isinstance(sys_inst, dict) else []
        out.append({"role": "system", "content": "".join(p.get("text", "") for p in parts)})
    for c in body.get("contents") or []:
        role = {"model": "assistant"}.get(c.get("role", "user"), c.get("role", "user"))
        text = "".join(p.get("text", "") for p in c.get("parts", []) if isinstance(p, dict))
        out.append({"role": role, "content": text})
    return out


def request_params(body: dict[str, Any]) -> dict[str, Any]:
    """The responder's ``params`` read from ``generationConfig`` (json_schema/json_mode only when asked)."""
    gc = body.get("generationConfig") or {}
    params: dict[str, Any] = {
        "max_tokens": gc.get("maxOutputTokens"),
        "temperature": gc.get("temperature"),
        "top_p": gc.get("topP"),
        "seed": gc.get("seed"),
        "stop": gc.get("stopSequences"),
    }
    schema = gc.get("responseJsonSchema") or gc.get("responseSchema")
    if schema is not None:
        params["json_schema"] = schema
    elif gc.get("responseMimeType") == "application/json":
        params["json_mode"] = True
    return params


def _safety_ratings() -> list[dict[str, Any]]:
    return [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]


def response_payload(model: str | None, text: str | None, finish: str, n_in: int, n_out: int) -> dict[str, Any]:
    """A ``GenerateContentResponse``; ``finish="refusal"`` is a SAFETY stop with no content."""
    candidate: dict[str, Any] = {
        "index": 0,
        "finishReason": {"stop": "STOP", "length": "MAX_TOKENS", "refusal": "SAFETY"}[finish],
    }
    if finish == "refusal":
        candidate["safetyRatings"] = _safety_ratings()
    else:
        candidate["content"] = {"role": "model", "parts": [{"text": text}]}
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": n_in, "candidatesTokenCount": n_out, "totalTokenCount": n_in + n_out},
        "modelVersion": model or "fault-model",
        "responseId": uuid.uuid4().hex[:16],
    }


def blocked_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` (a refusal) turned into a blocked prompt: ``promptFeedback``, no candidates."""
    return {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": _safety_ratings()},
        "usageMetadata": payload["usageMetadata"],
        "modelVersion": payload["modelVersion"],
        "responseId": payload["responseId"],
    }


def error_body(status: int, message: str, retry_after: float | None) -> dict[str, Any]:
    """A google.rpc error body; with ``retry_after``, a ``RetryInfo`` detail (as the real API sends)."""
    body: dict[str, Any] = {"error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "UNKNOWN")}}
    if retry_after is not None:  # the real API states the delay in the body too
        body["error"]["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{_fmt_seconds(retry_after)}s"}
        ]
    return body
