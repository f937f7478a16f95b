"""What the server remembers of each request, so tests can assert what was sent and how often.

Every request is kept as a :class:`RequestRecord` (arrival/finish times on ``time.monotonic()``,
headers without credentials, the parsed body, the fault applied, the status, how many requests were
in flight on arrival). With an in-process server the clock is the test's own, so tests can check
e.g. that a retry came no earlier than the ``Retry-After`` it was given.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mentalchat.testing.fault_server import gemini_protocol, openai_protocol

# Header names never recorded (credentials of either protocol).
_SECRET_HEADERS = {"authorization", "x-goog-api-key", "api-key", "x-api-key", "proxy-authorization", "cookie"}


@dataclasses.dataclass
class RequestRecord:
    """One request as the server saw it."""

    index: int  # arrival order, from 0
    protocol: str  # "openai" | "gemini" | "models"
    method: str
    path: str
    model: str | None
    headers: dict[str, str]  # credentials removed
    body: Any  # parsed JSON (or the raw text when it was not JSON)
    t_start: float  # time.monotonic() on arrival
    in_flight: int  # requests being handled on arrival, this one included
    t_end: float | None = None
    status: int | None = None
    fault: str = "ok"
    rate_limited: bool = False
    retry_after_s: float | None = None
    delay_s: float = 0.0  # the latency the server drew and slept before answering
    text: str | None = None  # the answer text, when one was produced

    @property
    def prompt(self) -> str:
        """All message text of the request joined (handy for ``match`` checks in tests)."""
        return "\n".join(m["content"] for m in _messages_of(self.protocol, self.body))


def _messages_of(protocol: str, body: Any) -> list[dict[str, str]]:
    """The request's messages as role/content dicts, whatever the protocol."""
    if not isinstance(body, dict):
        return []
    if protocol == "openai":
        return openai_protocol.messages(body)
    if protocol == "gemini":
        return gemini_protocol.messages(body)
    return []
