"""What the real OpenAI and Gemini APIs refuse, so tests see the errors users see.

Why apart from the engine's capability table (:mod:`mentalchat.engine.capabilities`): a server that
shares the client's table can only agree with it. These rules are written separately, from the
providers' documentation and the error bodies they are known to send (checked 2026-12-02), and
the tests run the engine against them:

* OpenAI Structured Outputs (``response_format`` ``json_schema``) exist from gpt-4o-2024-08-06 and
  gpt-4o-mini on (and the o1 / o3 / o4 / gpt-4.1 / gpt-5 / gpt-6 families); JSON mode
  (``json_object``) from gpt-3.5-turbo-1106 and gpt-4-1106-preview on, and it needs the word
  "json" somewhere in the messages. Reasoning models (o-series, gpt-5, gpt-6) refuse
  ``max_tokens`` (they take ``max_completion_tokens``) and any temperature or top_p but the
  default; o1-mini and o1-preview refuse system messages.
* Gemini 1.0 (``gemini-pro``) has no JSON mode; Gemini 1.5 takes ``responseSchema`` but not
  ``responseJsonSchema``.
* Retired models answer 404 (OpenAI ``model_not_found``; Gemini ``NOT_FOUND`` "is not found for API
  version"). Shutdowns as of 2026-12-02: OpenAI's gpt-3.5-turbo, gpt-4, gpt-4-turbo,
  gpt-4-1106-preview, gpt-4o-2024-05-13, o1, o3-mini, o4-mini, gpt-4.1-nano (2026-10-23);
  Gemini 1.0 (April 2025), 1.5 (September 2025), 2.0 Flash (2026), 2.5 Pro and Flash (2026-12-01).
* A wrong key: OpenAI 401 ``invalid_api_key`` (the key shown masked); Gemini 400
  ``INVALID_ARGUMENT`` with an ``ErrorInfo`` of reason ``API_KEY_INVALID``, and 403
  ``PERMISSION_DENIED`` when no key is sent.
* An exhausted quota: OpenAI 429 of type and code ``insufficient_quota``; Gemini 429
  ``RESOURCE_EXHAUSTED`` with a ``QuotaFailure`` detail (see :func:`quota_error`).

Each check returns ``(status, body)`` for a refusal, or None.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

__all__ = ["ProviderRules", "bad_key_error", "quota_error"]

_OPENAI_SCHEMA_OK = re.compile(
    r"^(gpt-4o-mini|gpt-4o(?!-2024-05-13)|chatgpt-4o|gpt-4\.1|o1(?!-mini|-preview)|o3|o4|gpt-5|gpt-6)"
)
_OPENAI_JSON_MODE_OK = re.compile(
    r"^(gpt-3\.5-turbo(?!-0613|-0301)|gpt-4-turbo|gpt-4-1106|gpt-4-0125|gpt-4o|chatgpt-4o|gpt-4\.1|o1(?!-mini|-preview)|o3|o4|gpt-5|gpt-6)"
)
_OPENAI_REASONING = re.compile(r"^(o\d|gpt-5(?!-chat)|gpt-6)")
_OPENAI_NO_SYSTEM = re.compile(r"^(o1-mini|o1-preview)")
_OPENAI_RETIRED = re.compile(
    r"^(gpt-3\.5-turbo.*|gpt-4|gpt-4-0613|gpt-4-0314|gpt-4-32k.*|gpt-4-turbo.*|gpt-4-1106-preview|gpt-4-0125-preview"
    r"|gpt-4o-2024-05-13|o1|o1-2024-12-17|o1-mini.*|o1-preview.*|o1-pro.*|o3-mini.*|o4-mini.*|gpt-4\.1-nano.*)$"
)
_GEMINI_NO_JSON_MODE = re.compile(r"^(gemini-pro|gemini-1\.0)")
_GEMINI_NO_JSON_SCHEMA = re.compile(r"^gemini-1\.5")
_GEMINI_RETIRED = re.compile(r"^(gemini-pro|gemini-1\.0-.*|gemini-1\.5-.*|gemini-2\.0-flash.*|gemini-2\.5-(pro|flash))$")


def _openai_error(status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                  code: str | None = None) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _gemini_error(status: int, grpc_status: str, message: str, details: list[dict[str, Any]] | None = None) -> tuple[int, dict[str, Any]]:
    err: dict[str, Any] = {"code": status, "message": message, "status": grpc_status}
    if details:
        err["details"] = details
    return status, {"error": err}


def _mask(key: str) -> str:
    return f"{key[:3]}{'*' * 8}{key[-4:]}" if len(key) > 8 else "*" * len(key)


def bad_key_error(protocol: str, sent: str | None) -> tuple[int, dict[str, Any]]:
    """The provider's answer to a wrong or missing API key."""
    if protocol == "gemini":
        if not sent:
            return _gemini_error(
                403, "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        return _gemini_error(
            400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
            [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
              "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}],
        )
    if not sent:
        return _openai_error(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                                  "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    return _openai_error(
        401, f"Incorrect API key provided: {_mask(sent)}. You can find your API key at "
             "https://platform.openai.com/account/api-keys.", code="invalid_api_key",
    )


def quota_error(protocol: str, model: str | None) -> tuple[int, dict[str, Any]]:
    """The provider's answer once the account's quota or credit is used up."""
    if protocol == "gemini":
        return _gemini_error(
            429, "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
              "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                              "quotaId": "GenerateRequestsPerDayPerProjectPerModel",
                              "quotaDimensions": {"model": model or "", "location": "global"}}]},
             {"@type": "type.googleapis.com/google.rpc.Help",
              "links": [{"description": "Learn more about Gemini API quotas",
                         "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}],
        )
    return _openai_error(
        429, "You exceeded your current quota, please check your plan and billing details. For more information on "
             "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        type_="insufficient_quota", code="insufficient_quota",
    )


def _bare(model: str | None) -> str:
    name = (model or "").strip()
    return name.removeprefix("models/")


@dataclasses.dataclass(frozen=True)
class ProviderRules:
    """Which of the real APIs' refusals the fault server applies.

    Args:
        capabilities: refuse parameters a model does not take (structured output, max_tokens,
            sampling, system role), with the providers' error bodies.
        retirements: answer 404 for models the providers have shut down (as of 2026-12-02).
        real_key_errors: answer a wrong key the way each provider does (Gemini: 400/403, not 401).
    """

    capabilities: bool = True
    retirements: bool = False
    real_key_errors: bool = True

    def check(self, protocol: str, model: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        name = _bare(model)
        if self.retirements:
            refusal = self._retired(protocol, name)
            if refusal is not None:
                return refusal
        if not self.capabilities:
            return None
        return self._openai(name, body) if protocol == "openai" else self._gemini(name, body)

    @staticmethod
    def _retired(protocol: str, name: str) -> tuple[int, dict[str, Any]] | None:
        if protocol == "openai" and _OPENAI_RETIRED.match(name):
            return _openai_error(404, f"The model `{name}` does not exist or you do not have access to it.",
                                 code="model_not_found")
        if protocol == "gemini" and _GEMINI_RETIRED.match(name):
            return _gemini_error(
                404, "NOT_FOUND",
                f"models/{name} is not found for API version v1beta, or is not supported for generateContent. "
                "Call ListModels to see the list of available models and their supported methods.",
            )
        return None

    @staticmethod
    def _openai(name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        rf = body.get("response_format") or {}
        kind = rf.get("type") if isinstance(rf, dict) else None
        if kind == "json_schema" and not _OPENAI_SCHEMA_OK.match(name):
            return _openai_error(
                400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model. "
                     "Learn more about supported models at the Structured Outputs guide: "
                     "https://platform.openai.com/docs/guides/structured-outputs",
                param="response_format",
            )
        if kind == "json_object":
            if not _OPENAI_JSON_MODE_OK.match(name):
                return _openai_error(400, "Invalid parameter: 'response_format' of type 'json_object' is not supported "
                                          "with this model.", param="response_format")
            text = " ".join(str(m.get("content", "")) for m in body.get("messages") or [] if isinstance(m, dict))
            if "json" not in text.lower():
                return _openai_error(400, "'messages' must contain the word 'json' in some form, to use "
                                          "'response_format' of type 'json_object'.", param="messages")
        if _OPENAI_REASONING.match(name):
            if "max_tokens" in body:
                return _openai_error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                          "Use 'max_completion_tokens' instead.", param="max_tokens",
                                     code="unsupported_parameter")
            for p in ("temperature", "top_p"):
                if p in body and body[p] is not None and float(body[p]) != 1.0:
                    return _openai_error(400, f"Unsupported value: '{p}' does not support {body[p]} with this model. "
                                              "Only the default (1) value is supported.", param=p,
                                         code="unsupported_value")
        if _OPENAI_NO_SYSTEM.match(name):
            for i, m in enumerate(body.get("messages") or []):
                if isinstance(m, dict) and m.get("role") == "system":
                    return _openai_error(400, f"Unsupported value: 'messages[{i}].role' does not support 'system' "
                                              "with this model.", param=f"messages[{i}].role",
                                         code="unsupported_value")
        return None

    @staticmethod
    def _gemini(name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        gc = body.get("generationConfig") or {}
        if _GEMINI_NO_JSON_MODE.match(name) and (gc.get("responseMimeType") == "application/json"
                                                 or "responseSchema" in gc or "responseJsonSchema" in gc):
            return _gemini_error(400, "INVALID_ARGUMENT", f"Json mode is not enabled for models/{name}")
        if _GEMINI_NO_JSON_SCHEMA.match(name) and "responseJsonSchema" in gc:
            return _gemini_error(400, "INVALID_ARGUMENT",
                                 f"responseJsonSchema is not supported for models/{name}; use responseSchema.")
        return None
