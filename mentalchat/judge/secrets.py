"""Scrub API keys from anything the judge stage writes or raises.

Keys come from the environment only. The HTTP engine already keeps them out of its errors; this is
the stage's own last line of defence, applied to every stored result, table cell, log line and
top-level error message, because a provider may echo the key back (e.g. in a 401 message).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatResult

__all__ = ["KEY_ENV_VARS", "Redactor"]

#: Variables that may hold credentials whatever the config says.
KEY_ENV_VARS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY")

# Shapes of common keys, caught even when they are not in this process's environment.
_KEY_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,})")


class Redactor:
    """Replaces known secret values (and key-shaped strings) with ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a key that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    @classmethod
    def from_engines(cls, engines: Iterable[EngineConfig]) -> Redactor:
        names = set(KEY_ENV_VARS)
        names.update(e.api_key_env for e in engines if e.api_key_env)
        return cls(os.environ.get(n, "") for n in names)

    def text(self, value: str) -> str:
        for s in self._secrets:
            if s in value:
                value = value.replace(s, "[REDACTED]")
        return _KEY_SHAPES.sub("[REDACTED]", value)

    def result(self, res: ChatResult) -> ChatResult:
        update = {}
        if res.text is not None:
            update["text"] = self.text(res.text)
        if res.error is not None:
            update["error"] = self.text(res.error)
        return res.model_copy(update=update) if update else res
