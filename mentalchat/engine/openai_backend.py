"""OpenAI and OpenAI-compatible endpoints (api.openai.com, a vLLM server, any compatible gateway).

Uses the official ``openai`` AsyncOpenAI client with the SDK's own retries off (``max_retries=0``):
retries, backoff and rate limits belong to :mod:`mentalchat.engine.http`. Structured output is
requested as ``response_format={"type": "json_schema", "json_schema": {..., "strict": True}}``,
which OpenAI and vLLM both enforce.
"""

from __future__ import annotations

import json
import re
from typing import Any

import openai

from mentalchat.engine.base import register_backend
from mentalchat.engine.http import HTTPEngine, RawResponse
from mentalchat.engine.retry import CallError, parse_retry_after, status_error
from mentalchat.engine.types import ChatRequest, SamplingConfig

__all__ = ["OpenAIEngine", "openai_params"]

# Reasoning models take max_completion_tokens and refuse max_tokens.
_COMPLETION_TOKENS_MODELS = re.compile(r"^(o\d|gpt-5)")


def _schema_name(schema: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "response"))
    return name[:64] or "response"


def openai_params(model: str, request: ChatRequest, sampling: SamplingConfig) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for one request."""
    params: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if _COMPLETION_TOKENS_MODELS.match(model):
        params["max_completion_tokens"] = sampling.max_tokens
    else:
        params["max_tokens"] = sampling.max_tokens
    if sampling.seed is not None:
        params["seed"] = sampling.seed
    if sampling.stop:
        params["stop"] = sampling.stop
    if request.json_schema is not None:
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(request.json_schema), "schema": request.json_schema, "strict": True},
        }
    return params


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

    async def _call(self, client: openai.AsyncOpenAI, request: ChatRequest, sampling: SamplingConfig) -> RawResponse:
        resp = await client.chat.completions.create(**openai_params(self.cfg.model, request, sampling))
        if not resp.choices:
            raise CallError("response has no choices", retryable=True)
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
            out = status_error(status, self.scrub(message), parse_retry_after(exc.response.headers))
            if status == 429 and code == "insufficient_quota":
                out.retryable = False  # billing, not throttling: waiting will not help
            return out
        if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError)):
            return CallError(f"unreadable response body ({type(exc).__name__})", retryable=True)
        return CallError(self.scrub(f"{type(exc).__name__}: {exc}"), kind="other", retryable=False)
