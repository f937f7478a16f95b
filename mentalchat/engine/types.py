"""Request and result types shared by every LLM backend.

Stages build :class:`ChatRequest` objects and get :class:`ChatResult` objects back, whatever the
backend: the same record goes through a vLLM actor in Ray Data, an OpenAI-compatible endpoint,
Gemini or transformers. Results never raise for a single failed call; they carry ``error`` (the
message, for people) and ``error_kind`` (what went wrong, for code: grouping failures, finding
budget refusals, deciding what to retry), so a batch always returns one result per request.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ERROR_KINDS", "ChatMessage", "ChatRequest", "ChatResult", "ErrorKind", "SamplingConfig", "request_key"]

Role = Literal["system", "user", "assistant"]

#: Why a call produced no usable text. Engines set the first twelve; stages add ``unparsed``
#: (a reply with nothing they could read) and ``interrupted`` (a call the run never made).
ErrorKind = Literal[
    "rate_limited",  # 429 after every retry
    "timeout",  # no answer within the timeout (or a 408), after every retry
    "connection",  # the connection failed or dropped, after every retry
    "http_4xx",  # the provider rejected the request (400, 401, 403, 404, 422 ...): not retried
    "http_5xx",  # server errors after every retry
    "bad_response",  # a body that could not be read (not JSON, no choices)
    "refused",  # the model or the provider's filter declined
    "empty",  # an answer without text
    "budget",  # not called: the dollar cap would be passed
    "invalid_request",  # a request the engine cannot take (malformed, longer than the model's context)
    "setup",  # the engine could not start
    "internal",  # a bug in mentalchat
    "unparsed",
    "interrupted",
    "other",  # anything else (and records written before kinds existed)
]
ERROR_KINDS: tuple[str, ...] = ErrorKind.__args__  # type: ignore[attr-defined]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Role
    content: str


class SamplingConfig(BaseModel):
    """Generation parameters understood by every backend (each maps them to its own names)."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1)
    seed: int | None = None
    stop: list[str] | None = None


class ChatRequest(BaseModel):
    """One chat call. ``json_schema`` asks the backend for structured output where it can."""

    model_config = ConfigDict(extra="forbid")
    id: str
    messages: list[ChatMessage]
    sampling: SamplingConfig | None = None  # None: the engine's defaults
    json_schema: dict[str, Any] | None = None
    lora: str | None = None  # adapter folder (vLLM / transformers backends only)
    cache_salt: str | None = None  # not sent; a new value asks again instead of answering from the cache
    metadata: dict[str, Any] = Field(default_factory=dict)  # carried through, not sent

    @classmethod
    def from_prompt(cls, id: str, prompt: str, system: str | None = None, **kw: Any) -> ChatRequest:
        msgs = [ChatMessage(role="system", content=system)] if system else []
        msgs.append(ChatMessage(role="user", content=prompt))
        return cls(id=id, messages=msgs, **kw)


class ChatResult(BaseModel):
    """What a backend returned for one request, with accounting."""

    model_config = ConfigDict(extra="forbid")
    id: str
    text: str | None = None
    finish_reason: str | None = None  # stop | length | error | ...
    provider: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    attempts: int = 0
    cached: bool = False
    error: str | None = None
    error_kind: ErrorKind | None = None  # set whenever ``error`` is (``other`` when the backend did not say)
    #: how the request was sent differently from the capability table's first choice, e.g.
    #: ``"response_format: json_schema -> json_object"`` (the provider refused the stronger form)
    adaptations: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind_with_error(self) -> ChatResult:
        if self.error is not None and self.error_kind is None:
            self.error_kind = "other"
        return self

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def request_key(
    provider: str,
    model: str,
    request: ChatRequest,
    sampling: SamplingConfig,
    *,
    endpoint: str | None = None,
) -> str:
    """Cache key over everything that changes a response: provider, endpoint, model, messages, parameters.

    ``endpoint`` (the base URL) is part of the key: two local servers may serve different weights
    under the same model name.
    """
    payload = {
        "provider": provider,
        "endpoint": endpoint,
        "model": model,
        "messages": [m.model_dump() for m in request.messages],
        "sampling": sampling.model_dump(),
        "json_schema": request.json_schema,
        "lora": request.lora,
    }
    if request.cache_salt is not None:
        payload["cache_salt"] = request.cache_salt
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
