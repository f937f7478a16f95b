"""One command-line style for every job: options, logging, Ray start-up and the error policy.

Why: the seven job scripts each copied their argument parsing, logging set-up and a hand-picked
tuple of exceptions to catch. Every command now gets the same ``--config``, ``key=value``
overrides and ``--verbose``; one logging format; and one error policy: a
:class:`~mentalchat.errors.MentalchatError` (or an ``OSError`` from the file system: a missing
file, a full disk, a folder without permission) prints ``error: <message>`` and exits 2, anything
else prints its traceback and exits 1, both scrubbed of API keys first.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mentalchat.errors import MentalchatError
from mentalchat.secrets import Scrubber

__all__ = [
    "EXIT_BUG",
    "EXIT_INPUT",
    "Command",
    "ErrorPolicy",
    "add_config_arguments",
    "init_ray",
    "setup_logging",
]

EXIT_INPUT = 2  # mentalchat refused the input or request; the message says what to change
EXIT_BUG = 1  # anything else: the traceback follows

#: Loggers that write one line per HTTP request: quiet unless --verbose (they drown progress bars).
CHATTY_LOGGERS = ("httpx", "httpx2", "openai", "google_genai", "mentalchat.engine.http")

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class Command(Protocol):
    """A ``mentalchat`` sub-command that is not a stage (``pipeline``, ``fastchat``)."""

    name: str
    summary: str
    usage: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, policy: ErrorPolicy) -> int:
        """The command's body (inside the error policy); ``policy.watch`` the configs it loads."""


def setup_logging(verbose: bool = False) -> None:
    """INFO to stderr in one format; per-request HTTP logging only with ``--verbose``."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if not verbose:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def add_config_arguments(
    parser: argparse.ArgumentParser, *, config_required: bool = True, overrides_help: str | None = None
) -> None:
    """``--config FILE``, ``--verbose`` and the trailing ``key=value`` overrides."""
    if config_required:
        parser.add_argument("--config", required=True, help="YAML config (one section per stage)")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request and retry")
    parser.add_argument(
        "overrides", nargs="*",
        help=overrides_help or "key=value config overrides (dotted, relative to the stage's section or the file root)",
    )


def init_ray() -> None:
    """Join the cluster a submitted job runs on (RAY_ADDRESS), or start a local one."""
    import ray

    ray.init(ignore_reinit_error=True, log_to_driver=False, configure_logging=False)


class ErrorPolicy:
    """Runs a command body and turns what it raises into an exit code and a scrubbed message.

    Starts out scrubbing the providers' usual key variables; :meth:`watch` adds the variables a
    loaded config names, so a key echoed in an error never reaches the terminal.
    """

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.scrubber = Scrubber.from_env()
        self._echo = echo or (lambda msg: print(msg, file=sys.stderr))

    def watch(self, configs: Iterable[Any]) -> None:
        """Scrub the API-key variables of every engine of these configs too."""
        names = []
        for cfg in configs:
            for engine in (getattr(cfg, "engines", None) or {}).values():
                names.append(getattr(engine, "api_key_env", None))
        self.scrubber = Scrubber.from_env(names)

    def run(self, body: Callable[[], int]) -> int:
        try:
            return body()
        except (MentalchatError, OSError) as exc:
            self._echo(f"error: {self.scrubber.text(exc)}")
            return EXIT_INPUT
        except Exception:  # noqa: BLE001 - a bug: its traceback, scrubbed of any key
            self._echo(self.scrubber.text(traceback.format_exc()))
            return EXIT_BUG
