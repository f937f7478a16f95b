"""Gemini over the ``google-genai`` SDK (``client.aio.models.generate_content``).

The SDK's own retries are switched off (``HttpRetryOptions(attempts=1)``, which also stops its
implicit retry of aiohttp connection errors that would otherwise sleep 1-10 s); the shared loop in
:mod:`mentalchat.engine.http` retries instead. ``base_url`` comes from the config or
``GOOGLE_GEMINI_BASE_URL``. A system message becomes ``system_instruction``; assistant turns become
``model`` turns. Structured output follows the engine's
:class:`~mentalchat.engine.capabilities.RequestShape`: ``response_mime_type="application/json"``
plus ``response_json_schema`` (a plain JSON Schema; Gemini 2.x and later) or, for Gemini 1.5,
``response_schema`` (Google's OpenAPI subset); JSON mode alone with the schema in the prompt; or, for
Gemini 1.0 (``gemini-pro``, which has no JSON mode), only the prompt. A 400 refusing JSON mode or a
schema field is classified as ``CallError(unsupported="response_format")``. Finish reasons map to ``stop``, ``length`` (MAX_TOKENS) and
``content_filter`` (SAFETY, RECITATION, BLOCKLIST, ...; reported as a refusal when no text came).
"""

from __future__ import annotations

import json
import re
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from mentalchat.engine.base import register_backend
from mentalchat.engine.capabilities import RequestShape, capabilities_for, shape_messages
from mentalchat.engine.http import HTTPEngine, RawResponse
from mentalchat.engine.retry import CallError, parse_retry_after, status_error
from mentalchat.engine.types import ChatRequest, SamplingConfig

__all__ = ["GeminiEngine", "gemini_config", "gemini_contents", "response_to_raw"]

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "FINISH_REASON_UNSPECIFIED": "stop"}
_BLOCKED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "LANGUAGE",
}
_REFUSED_SCHEMA = re.compile(
    r"json mode is not enabled|response_?(mime_?type|json_?schema|schema)|responseJsonSchema|responseSchema|responseMimeType",
    re.IGNORECASE,
)


def gemini_contents(request: ChatRequest, shape: RequestShape | None = None) -> tuple[str | None, list[types.Content]]:
    """(system instruction, contents) for one request, with the messages as ``shape`` sends them."""
    messages = shape_messages(request, shape) if shape is not None else list(request.messages)
    system = [m.content for m in messages if m.role == "system"]
    contents = [
        types.Content(role="model" if m.role == "assistant" else "user", parts=[types.Part(text=m.content)])
        for m in messages
        if m.role != "system"
    ]
    return ("\n\n".join(system) if system else None), contents


def gemini_config(
    model: str,
    request: ChatRequest,
    sampling: SamplingConfig,
    system: str | None,
    shape: RequestShape | None = None,
) -> types.GenerateContentConfig:
    """The ``GenerateContentConfig`` for one request under ``shape`` (default: the table's for ``model``)."""
    shape = shape or capabilities_for("gemini", model)
    kw: dict[str, Any] = {
        "max_output_tokens": sampling.max_tokens,
        # No tools are passed; disabling automatic function calling also silences a log line per call.
        "automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True),
    }
    if shape.temperature:
        kw["temperature"] = sampling.temperature
        kw["top_p"] = sampling.top_p
    if system:
        kw["system_instruction"] = system
    if sampling.seed is not None and shape.seed:
        kw["seed"] = sampling.seed
    if sampling.stop:
        kw["stop_sequences"] = sampling.stop
    if request.json_schema is not None and shape.structured != "text":
        kw["response_mime_type"] = "application/json"
        if shape.structured == "openapi_schema":
            kw["response_schema"] = request.json_schema
        elif shape.structured == "json_schema":
            kw["response_json_schema"] = request.json_schema
    return types.GenerateContentConfig(**kw)


def _retry_delay_from_details(details: Any) -> float | None:
    """Gemini puts ``RetryInfo.retryDelay`` ("12s") in the error body instead of a header."""
    err = details.get("error", details) if isinstance(details, dict) else None
    for item in (err or {}).get("details", []) if isinstance(err, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            m = re.fullmatch(r"\s*([0-9.]+)s\s*", str(item.get("retryDelay", "")))
            if m:
                return float(m.group(1))
    return None


def response_to_raw(resp: types.GenerateContentResponse) -> RawResponse | CallError:
    """A ``GenerateContentResponse`` in provider-neutral terms (online answers and batch items alike)."""
    usage = resp.usage_metadata
    t_in = usage.prompt_token_count if usage is not None else None
    t_out = None
    if usage is not None and (usage.candidates_token_count is not None or usage.thoughts_token_count is not None):
        t_out = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)  # thinking is billed as output
    if not resp.candidates:
        block = resp.prompt_feedback.block_reason if resp.prompt_feedback is not None else None
        if block is not None:
            name = getattr(block, "name", str(block))
            return RawResponse(None, "content_filter", t_in, t_out or 0, refusal=f"prompt blocked ({name})")
        return CallError("response has no candidates", retryable=True)
    cand = resp.candidates[0]
    reason = cand.finish_reason
    name = getattr(reason, "name", str(reason)) if reason is not None else "STOP"
    finish = "content_filter" if name in _BLOCKED else _FINISH.get(name, name.lower())
    parts = cand.content.parts if cand.content is not None and cand.content.parts else []
    texts = [p.text for p in parts if p.text is not None and not p.thought]
    text = "".join(texts) if texts else None
    refusal = f"blocked ({name})" if finish == "content_filter" and not text else None
    return RawResponse(text if refusal is None else None, finish, t_in, t_out, refusal=refusal)


@register_backend("gemini")
class GeminiEngine(HTTPEngine):
    """``backend: gemini``: Google's Gemini API (or anything speaking its REST protocol)."""

    provider = "gemini"
    base_url_env = "GOOGLE_GEMINI_BASE_URL"

    def _make_client(self) -> genai.Client:
        http_options = types.HttpOptions(
            base_url=self.base_url,
            timeout=int(self.cfg.http.timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        # Held on the engine: an unreferenced client is closed by the GC mid-call.
        return genai.Client(api_key=self._api_key, vertexai=False, http_options=http_options)

    async def _close_client(self, client: genai.Client) -> None:
        await client.aio.aclose()

    async def _call(
        self, client: genai.Client, request: ChatRequest, sampling: SamplingConfig, shape: RequestShape
    ) -> RawResponse:
        system, contents = gemini_contents(request, shape)
        config = gemini_config(self.cfg.model, request, sampling, system, shape)
        resp = await client.aio.models.generate_content(model=self.cfg.model, contents=contents, config=config)
        raw = response_to_raw(resp)
        if isinstance(raw, CallError):
            raise raw
        return raw

    def _classify(self, exc: BaseException) -> CallError:
        if isinstance(exc, genai_errors.APIError):
            status = int(exc.code) if exc.code else 0
            headers = getattr(exc.response, "headers", None)
            retry_after = parse_retry_after(headers) if headers is not None else None
            if retry_after is None:
                retry_after = _retry_delay_from_details(exc.details)
            message = self.scrub(exc.message or exc.status or "error")
            if status:
                out = status_error(status, message, retry_after)
                if status == 400 and _REFUSED_SCHEMA.search(exc.message or ""):
                    out.unsupported = "response_format"
                if status == 429 and _daily_quota(exc.details):
                    out.retryable = False  # a per-day quota: waiting minutes will not help
                return out
            return CallError(message, kind="other", retryable=False)
        if isinstance(exc, json.JSONDecodeError):
            return CallError("unreadable response body (JSONDecodeError)", retryable=True)
        if _is_connection_error(exc):
            return CallError(f"connection error ({type(exc).__name__})", kind="connection", retryable=True)
        return CallError(self.scrub(f"{type(exc).__name__}: {exc}"), kind="other", retryable=False)


def _daily_quota(details: Any) -> bool:
    """A 429 whose ``QuotaFailure`` names a per-day quota (or no RetryInfo at all with one)."""
    err = details.get("error", details) if isinstance(details, dict) else None
    for item in (err or {}).get("details", []) if isinstance(err, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("QuotaFailure"):
            for v in item.get("violations") or []:
                if "perday" in str(v.get("quotaId", "")).lower():
                    return True
    return False


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import aiohttp

        if isinstance(exc, aiohttp.ClientError):
            return True
    except ImportError:  # pragma: no cover - aiohttp comes with ray
        pass
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, (ConnectionError, OSError))
