"""The crisis evaluation set: client messages and counsellor answers, a dev and a frozen test split.

Written for this project (``mentalchat/data/crisis_eval/``). Rules and prompts are tuned on
``dev`` only; ``test`` is held out: its files' SHA-256 sums are in ``SHA256SUMS`` beside them and
:func:`verify_frozen` (run by the tests and the benchmark) fails when a byte of them changes, so a
rule can never quietly be fitted to the cases that measure it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from mentalchat.core.crisis_rules import CRISIS_CATEGORIES
from mentalchat.errors import InputError
from mentalchat.io import iter_jsonl

__all__ = [
    "EvalAnswer",
    "EvalMessage",
    "Split",
    "default_folder",
    "load_answers",
    "load_messages",
    "verify_frozen",
]

Split = Literal["dev", "dev2", "test"]
FROZEN_FILES = ("test_messages.jsonl", "test_answers.jsonl")


@dataclass(frozen=True)
class EvalMessage:
    id: str
    text: str
    categories: tuple[str, ...]  # empty: a hard negative
    subtype: str


@dataclass(frozen=True)
class EvalAnswer:
    id: str
    client: str
    answer: str
    category: str
    escalated: bool
    hard: bool  # a non-escalating answer that uses escalation-like words


def default_folder() -> Path:
    return Path(str(resources.files("mentalchat") / "data" / "crisis_eval"))


def _check_category(path: Path, line: int, value: object) -> str:
    if value not in CRISIS_CATEGORIES:
        raise InputError.at(path, line, f"unknown category {value!r} (known: {', '.join(CRISIS_CATEGORIES)})")
    return str(value)


def load_messages(split: Split, folder: Path | None = None) -> list[EvalMessage]:
    path = (folder or default_folder()) / f"{split}_messages.jsonl"
    out: list[EvalMessage] = []
    for line, rec in iter_jsonl(path):
        if not isinstance(rec.get("text"), str) or not isinstance(rec.get("categories"), list):
            raise InputError.at(path, line, "each line needs 'text' (string) and 'categories' (list)")
        cats = tuple(_check_category(path, line, c) for c in rec["categories"])
        out.append(EvalMessage(str(rec["id"]), rec["text"], cats, str(rec.get("subtype") or "")))
    return out


def load_answers(split: Split, folder: Path | None = None) -> list[EvalAnswer]:
    path = (folder or default_folder()) / f"{split}_answers.jsonl"
    out: list[EvalAnswer] = []
    for line, rec in iter_jsonl(path):
        if not isinstance(rec.get("answer"), str) or not isinstance(rec.get("escalated"), bool):
            raise InputError.at(path, line, "each line needs 'answer' (string) and 'escalated' (true/false)")
        note = str(rec.get("note") or "").lower()
        out.append(EvalAnswer(str(rec["id"]), str(rec.get("client") or ""), rec["answer"],
                              _check_category(path, line, rec.get("category")), rec["escalated"],
                              hard=not rec["escalated"] and note.startswith("hard")))
    return out


def file_sums(folder: Path | None = None) -> dict[str, str]:
    folder = folder or default_folder()
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in FROZEN_FILES}


def verify_frozen(folder: Path | None = None) -> None:
    """Raise when the held-out files differ from the sums recorded when they were frozen."""
    folder = folder or default_folder()
    recorded: dict[str, str] = {}
    for raw in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if raw.strip():
            digest, name = raw.split(maxsplit=1)
            recorded[name.strip()] = digest
    actual = file_sums(folder)
    changed = [n for n in FROZEN_FILES if recorded.get(n) != actual[n]]
    if changed:
        raise InputError(f"{folder}: the frozen held-out split changed ({', '.join(changed)}); it must not be "
                         "edited: tune on dev, and add new cases to a new split", path=folder)
