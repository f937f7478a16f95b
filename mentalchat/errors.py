"""The one exception base of mentalchat, and the errors every layer shares.

Why one base: a job, the pipeline or a user's script can tell "mentalchat refused this input or
request, here is what to change" (:class:`MentalchatError`, exit code 2, message only) from a bug
(anything else, exit code 1, traceback) with a single ``except``. Subclasses keep the built-in
class they always were (``ValueError``, ``RuntimeError``, ``FileNotFoundError``) as a second base,
so code that caught those still works.

Errors about a file carry ``path`` (and ``line`` where there is one) as attributes, so tools can
point at the place; the message already names them for people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

__all__ = [
    "DataError",
    "InputError",
    "InputNotFoundError",
    "MentalchatError",
    "StageError",
    "UsageError",
]


class MentalchatError(Exception):
    """Base of every error mentalchat raises on purpose: bad input, an impossible request, a refused call.

    ``path`` and ``line`` say where, when the error is about a place in a file.
    """

    def __init__(self, message: str = "", *, path: str | Path | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line

    @classmethod
    def at(cls, path: str | Path, line: int | None, message: str) -> Self:
        """``path:line: message``, with both kept as attributes."""
        where = f"{path}:{line}" if line is not None else str(path)
        return cls(f"{where}: {message}", path=path, line=line)

    @property
    def where(self) -> str | None:
        """``path:line`` (or ``path``) when known."""
        if self.path is None:
            return None
        return f"{self.path}:{self.line}" if self.line is not None else self.path


class InputError(MentalchatError, ValueError):
    """An input (file, table, argument) that cannot be used; the message says what and where."""


class DataError(InputError):
    """Training or evaluation data that cannot be used (an empty configuration, a prompt that does
    not fit); the message names the dataset and what is wrong."""


class InputNotFoundError(MentalchatError, FileNotFoundError):
    """An input file or folder that does not exist."""


class UsageError(MentalchatError, ValueError):
    """A command line or call that asks for something contradictory or impossible."""


class StageError(MentalchatError, RuntimeError):
    """A stage that ran but cannot produce its output (every request failed, a missing model)."""
