"""The fault model: what the server does with one call instead of (or on top of) a normal answer.

Why a module of its own: tests, the CLI and the server all name faults the same short ways
(``"429"``, ``"unavailable"``, ``Fault("timeout", hang_s=2)``), and this is the one place that
turns those names into a :class:`Fault` and checks them.

Kinds
-----

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
``quota``                 429 as each provider answers an exhausted quota or credit (OpenAI
                          ``insufficient_quota``; Gemini ``RESOURCE_EXHAUSTED`` + ``QuotaFailure``)
``ok``                    answer normally (useful in scripts)
========================  ====================================================================

A fault's other fields: ``retry_after_s`` (429, or any error that should carry Retry-After),
``retry_after_header=False`` (state the delay only in the body, as Gemini's ``RetryInfo`` does),
``hang_s`` (timeout), ``message`` (error or refusal text), ``code`` (OpenAI error code, e.g.
``insufficient_quota``). Shorthands accepted wherever a fault is: ``None``/"ok", a kind name, an
HTTP status (``429``, ``"503"``) or an alias (``server_error``, ``unavailable``, ``bad_request``,
``unauthorized``, ``forbidden``, ``not_found``).
"""

from __future__ import annotations

import dataclasses
import re

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
    "quota",
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
        """The status this fault answers with (200 for the kinds that answer a body)."""
        if self.kind in ("rate_limit", "quota"):
            return 429
        if self.kind == "error":
            return self.status or 500
        return 200


def _fmt_seconds(s: float) -> str:
    """A delay as both protocols write it: ``"2"``, ``"0.25"`` (Retry-After, Gemini retryDelay)."""
    return str(int(s)) if float(s).is_integer() else f"{s:.3f}".rstrip("0")


def _parse_fault_rates(items: list[str]) -> dict[str, float]:
    """``["503=0.05", "timeout=0.01"]`` (the CLI's ``--fault``) as ``fault_rates``; exits on a bad item."""
    out: dict[str, float] = {}
    for item in items:
        m = re.fullmatch(r"\s*([\w]+)\s*=\s*([0-9.]+)\s*", item)
        if not m:
            raise SystemExit(f"--fault expects KIND=PROBABILITY (e.g. 503=0.05), got {item!r}")
        Fault.parse(m.group(1))  # validate
        out[m.group(1)] = float(m.group(2))
    return out
