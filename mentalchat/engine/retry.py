"""Failed attempts as typed errors, and the decision what to do about one.

Why objects: the call loop used to decide retries, waits and what the limiter hears in one block
of ifs, and failures travelled on as free text that callers grouped by string prefix. A
:class:`CallError` now carries its :data:`~mentalchat.engine.types.ErrorKind`, and
:meth:`RetryPolicy.decide` turns (error, attempts so far) into a :class:`RetryDecision`: retry or
not, after how long, and why not. The same error says what the adaptive limiter learns
(:attr:`CallError.outcome`: a 429 halves the concurrency, a Retry-After pauses everyone).

Rules: 429, 408, 409, 425, 5xx, timeouts, connection errors and unreadable bodies are retried up
to ``max_retries`` times with full-jitter exponential backoff
(``uniform(0, min(backoff_max_s, backoff_base_s * 2**n))``), or after the server's Retry-After
(plus up to 10% jitter) when it sent one; a Retry-After longer than ``10 x backoff_max_s`` is not
waited for. Other 4xx fail at once.
"""

from __future__ import annotations

import dataclasses
import email.utils
import random
import time
from typing import Any

from mentalchat.engine.config import HTTPOptions
from mentalchat.engine.limiter import Outcome
from mentalchat.engine.types import ErrorKind
from mentalchat.errors import MentalchatError

__all__ = [
    "RETRYABLE_STATUS",
    "CallError",
    "RetryDecision",
    "RetryPolicy",
    "parse_retry_after",
    "status_error",
]

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


class CallError(MentalchatError):
    """A failed attempt, already classified (and scrubbed) by the backend."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind = "bad_response",
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        unsupported: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        #: the parameter the provider refuses for this model (see engine.capabilities), if that is the error
        self.unsupported = unsupported

    @property
    def rate_limited(self) -> bool:
        return self.kind == "rate_limited"

    @property
    def outcome(self) -> Outcome:
        """What the adaptive limiter hears about this attempt."""
        return "rate_limited" if self.rate_limited else "error"

    def describe(self) -> str:
        return f"HTTP {self.status}: {self.message}" if self.status else self.message


def status_error(status: int, message: str, retry_after_s: float | None = None) -> CallError:
    """Classify an HTTP error status (429/5xx retried; other 4xx not)."""
    if status == 429:
        kind: ErrorKind = "rate_limited"
    elif status >= 500:
        kind = "http_5xx"
    elif status in (408,):
        kind = "timeout"
    else:
        kind = "http_4xx"
    return CallError(
        message,
        kind=kind,
        status=status,
        retryable=status in RETRYABLE_STATUS or status >= 500,
        retry_after_s=retry_after_s,
    )


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), else None."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclasses.dataclass(frozen=True)
class RetryDecision:
    """Whether to try again, after how many seconds, and (when not) why, for the error message."""

    retry: bool
    delay_s: float = 0.0
    why_not: str | None = None


class RetryPolicy:
    """Decides retries from :class:`~mentalchat.engine.config.HTTPOptions` (see the module docstring)."""

    def __init__(self, opts: HTTPOptions, rng: random.Random | None = None) -> None:
        self.opts = opts
        self._rng = rng or random.Random()

    @property
    def max_attempts(self) -> int:
        return self.opts.max_retries + 1

    def decide(self, err: CallError, attempts: int) -> RetryDecision:
        """What to do after ``attempts`` attempts, the last of which failed with ``err``."""
        opts = self.opts
        retry_after = err.retry_after_s
        if not err.retryable:
            return RetryDecision(False, why_not="not retried")
        if retry_after is not None and retry_after > 10 * opts.backoff_max_s:
            return RetryDecision(False, why_not=f"server asks to wait {retry_after:g}s, beyond 10 x backoff_max_s")
        if attempts >= self.max_attempts:
            return RetryDecision(False, why_not=f"gave up after {attempts} attempts")
        if retry_after is not None:
            delay = retry_after * (1.0 + self._rng.uniform(0.0, 0.1))
        else:
            delay = self._rng.uniform(0.0, min(opts.backoff_max_s, opts.backoff_base_s * 2 ** (attempts - 1)))
        return RetryDecision(True, delay_s=delay)
