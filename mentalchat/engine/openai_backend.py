"""OpenAI and OpenAI-compatible endpoints (api.openai.com, a vLLM server, any compatible gateway).

Uses the official ``openai`` AsyncOpenAI client with the SDK's own retries off (``max_retries=0``):
retries, backoff and rate limits belong to :mod:`mentalchat.engine.http`. What a request carries
follows the engine's :class:`~mentalchat.engine.capabilities.RequestShape`: structured output as
``response_format={"type": "json_schema", "json_schema": {..., "strict": True}}`` (OpenAI from
gpt-4o-2024-08-06 on, vLLM), ``{"type": "json_object"}`` with the schema in the prompt (JSON mode
only, e.g. gpt-4-1106-preview) or nothing; ``max_tokens`` or ``max_completion_tokens``; sampling
parameters only where the model takes them. A 400 naming a refused parameter is classified as
``CallError(unsupported=...)`` so the engine can downgrade the shape.
"""

from __future__ import annotations

import json
import re
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from mentalchat.engine.base import register_backend
from mentalchat.engine.capabilities import RequestShape, capabilities_for, shape_messages
from mentalchat.engine.http import HTTPEngine, RawResponse
from mentalchat.engine.retry import CallError, parse_retry_after, status_error
from mentalchat.engine.types import ChatRequest, SamplingConfig

__all__ = ["OpenAIEngine", "completion_to_raw", "openai_params", "refused_param"]

def _schema_name(schema: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "response"))
    return name[:64] or "response"


def openai_params(
    model: str, request: ChatRequest, sampling: SamplingConfig, shape: RequestShape | None = None
) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for one request under ``shape``
    (default: what the capability table says for ``model``)."""
    shape = shape or capabilities_for("openai", model)
    params: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in shape_messages(request, shape)],
    }
    if shape.temperature:
        params["temperature"] = sampling.temperature
        params["top_p"] = sampling.top_p
    params[shape.max_tokens_param] = sampling.max_tokens
    if sampling.seed is not None and shape.seed:
        params["seed"] = sampling.seed
    if sampling.stop:
        params["stop"] = sampling.stop
    if request.json_schema is not None and shape.structured in ("json_schema", "openapi_schema"):
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(request.json_schema), "schema": request.json_schema, "strict": True},
        }
    elif request.json_schema is not None and shape.structured == "json_object":
        params["response_format"] = {"type": "json_object"}
    return params


def refused_param(message: str, param: str | None, code: str | None) -> str | None:
    """Which parameter a 400 refuses, in :class:`RequestShape` terms (None: not a capability error)."""
    text = (message or "").lower()
    p = (param or "").lower()
    refused = "not supported" in text or "unsupported" in text or code in ("unsupported_parameter", "unsupported_value")
    if not refused:
        return None  # e.g. an invalid schema: a bug to show, not a capability to give up
    if "response_format" in p or "response_format" in text:
        return "response_format"
    if p == "max_tokens" or "'max_tokens' is not supported" in text:
        return "max_tokens"
    if p in ("temperature", "top_p") or re.search(r"'(temperature|top_p)' does not support", text):
        return "temperature"
    if p == "seed" or "'seed' is not supported" in text:
        return "seed"
    if (p.startswith("messages") and "system" in text) or "does not support 'system'" in text:
        return "system_role"
    return None


def completion_to_raw(resp: ChatCompletion) -> RawResponse | CallError:
    """A ``chat.completion`` in provider-neutral terms (online answers and batch output lines alike)."""
    if not resp.choices:
        return CallError("response has no choices", retryable=True)
    choice = resp.choices[0]
    content = choice.message.content
    finish = choice.finish_reason
    refusal = getattr(choice.message, "refusal", None) if not content else None
    if refusal is None and not content and finish == "content_filter":
        refusal = "content filtered"
    if refusal is not None and finish != "content_filter":
        finish = "refusal"
    usage = resp.usage
    return RawResponse(
        text=content if refusal is None else None,
        finish_reason=finish,
        tokens_in=usage.prompt_tokens if usage is not None else None,
        tokens_out=usage.completion_tokens if usage is not None else None,
        refusal=refusal,
    )


@register_backend("openai")
class OpenAIEngine(HTTPEngine):
    """``backend: openai``: chat completions over the official SDK."""

    provider = "openai"
    base_url_env = "OPENAI_BASE_URL"

    def _make_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.cfg.http.timeout_s,
        )

    async def _close_client(self, client: openai.AsyncOpenAI) -> None:
        await client.close()

    async def _call(
        self, client: openai.AsyncOpenAI, request: ChatRequest, sampling: SamplingConfig, shape: RequestShape
    ) -> RawResponse:
        resp = await client.chat.completions.create(**openai_params(self.cfg.model, request, sampling, shape))
        raw = completion_to_raw(resp)
        if isinstance(raw, CallError):
            raise raw
        return raw

    def _classify(self, exc: BaseException) -> CallError:
        if isinstance(exc, openai.APITimeoutError):
            return CallError(f"timed out after {self.cfg.http.timeout_s:g}s", kind="timeout", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f" ({type(cause).__name__})" if cause is not None else ""
            return CallError(f"connection error{detail}", kind="connection", retryable=True)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            body = exc.body if isinstance(exc.body, dict) else {}
            err = body.get("error", body) if isinstance(body, dict) else {}
            message = (err.get("message") if isinstance(err, dict) else None) or exc.message
            code = err.get("code") if isinstance(err, dict) else None
            param = err.get("param") if isinstance(err, dict) else None
            out = status_error(status, self.scrub(message), parse_retry_after(exc.response.headers))
            if status == 400:
                out.unsupported = refused_param(str(message), param if isinstance(param, str) else None, code)
            if status == 429 and code == "insufficient_quota":
                out.retryable = False  # billing, not throttling: waiting will not help
            return out
        if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError)):
            return CallError(f"unreadable response body ({type(exc).__name__})", retryable=True)
        return CallError(self.scrub(f"{type(exc).__name__}: {exc}"), kind="other", retryable=False)
