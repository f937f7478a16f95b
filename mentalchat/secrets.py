"""The one secrets scrubber: API keys out of every error, log line, table cell and report.

Keys come from the environment only (the variable an engine config names, plus the providers'
usual ones). A provider may echo a key back (a 401 body repeats it, sometimes shortened to its
first and last characters), and a traceback may hold a request's headers, so everything that
leaves a process through mentalchat passes :meth:`Scrubber.text` first: the HTTP engines for
their error messages, the judge stage for stored results and table cells, the jobs for what they
print. Known values are replaced (longest first), then anything shaped like a key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["KEY_ENV_VARS", "REDACTED", "Scrubber", "scrub"]

#: Variables that may hold credentials whatever a config says.
KEY_ENV_VARS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY", "LABEL_STUDIO_API_KEY")

REDACTED = "[REDACTED]"

# Shapes of keys, caught even when the value is not in this process's environment.
_KEY_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_\-]{12,}|AIza[0-9A-Za-z_\-]{20,})")
# A credential by its context ("Bearer x", "api_key=x"): only in messages (errors, logs), where
# it cannot be ordinary words; the group before the value is kept.
_KEY_CONTEXTS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',}]+"),
    re.compile(r"(?i)((?:api[_-]?key|key|x-goog-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"),
)

_MIN_SECRET = 4  # shorter values would blank ordinary words
_ECHO_MIN = 16  # keys at least this long are also scrubbed by their first 8 / last 6 characters

M = TypeVar("M")


class Scrubber:
    """Replaces known secret values, their shortened echoes and key-shaped strings with ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {s for s in secrets if s and len(s) >= _MIN_SECRET}
        fragments = set()
        for s in values:
            if len(s) >= _ECHO_MIN:
                fragments.update((s[:8], s[-6:]))
        # Longest first, so a key that contains another is replaced whole before its pieces.
        self._values = sorted(values | fragments, key=len, reverse=True)

    @classmethod
    def from_env(cls, names: Iterable[str | None] = ()) -> Scrubber:
        """The values of ``names`` and of :data:`KEY_ENV_VARS` in this process's environment."""
        wanted = set(KEY_ENV_VARS) | {n for n in names if n}
        return cls(os.environ.get(n, "") for n in wanted)

    def content(self, value: object) -> str:
        """Model-written text (answers, judge replies): known values and key shapes only."""
        out = str(value)
        for secret in self._values:
            if secret in out:
                out = out.replace(secret, REDACTED)
        return _KEY_SHAPES.sub(REDACTED, out)

    def text(self, value: object) -> str:
        """Messages (errors, log lines, tracebacks): also credentials recognised by their context."""
        out = self.content(value)
        for pat in _KEY_CONTEXTS:
            out = pat.sub(lambda m: m.group(1) + REDACTED, out)
        return out

    def result(self, res: M) -> M:
        """A copy of a chat result with its ``text`` (content) and ``error`` (message) scrubbed."""
        update: dict[str, Any] = {}
        text, error = getattr(res, "text", None), getattr(res, "error", None)
        if isinstance(text, str) and (clean := self.content(text)) != text:
            update["text"] = clean
        if isinstance(error, str) and (clean := self.text(error)) != error:
            update["error"] = clean
        return res.model_copy(update=update) if update else res  # type: ignore[attr-defined]


def scrub(text: object, secrets: Iterable[str] = ()) -> str:
    """A message with ``secrets`` and anything shaped like a credential replaced (see :meth:`Scrubber.text`)."""
    return Scrubber(secrets).text(text)
