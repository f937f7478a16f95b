"""FastChat judge-prompt records, loaded by name from a ``judge_prompts.jsonl`` the user supplies.

This is how a published protocol is replicated exactly (e.g. ``single-mental-v1``, the paper's
7-metric judge): the record's system prompt and template are sent unchanged, the judge answers in
FastChat's ``[[n]]`` text format and the tolerant parser reads it. The prompt text is never copied
into this repository; it is read from the user's file at run time.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from mentalchat.engine.types import ChatMessage
from mentalchat.errors import MentalchatError
from mentalchat.io import iter_jsonl

__all__ = ["FastChatPrompt", "FastChatPromptError", "load_fastchat_prompt"]


class FastChatPromptError(MentalchatError, ValueError):
    """A judge-prompt file or record that cannot be used; names the file and line."""


@dataclass(frozen=True)
class FastChatPrompt:
    name: str
    system_prompt: str
    prompt_template: str
    source: str

    def render(self, question: str, answer: str) -> list[ChatMessage]:
        values = {"question": question, "answer": answer, "question_1": question, "answer_1": answer}
        try:
            user = self.prompt_template.format_map(values)
        except (KeyError, IndexError, ValueError) as exc:
            raise FastChatPromptError(
                f"{self.source}: prompt {self.name!r} needs a field this stage cannot fill: {exc}"
            ) from None
        msgs = [ChatMessage(role="system", content=self.system_prompt)] if self.system_prompt else []
        msgs.append(ChatMessage(role="user", content=user))
        return msgs


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def load_fastchat_prompt(path: str | Path, name: str) -> FastChatPrompt:
    """Find record ``name`` in a FastChat judge-prompts JSONL; only single-answer prompts apply."""
    path = Path(path)
    if not path.is_file():
        raise FastChatPromptError(f"FastChat judge-prompt file not found: {path}")
    names = []
    for lineno, rec in iter_jsonl(path, error=FastChatPromptError):
        if "name" not in rec:
            raise FastChatPromptError(f"{path}:{lineno}: a judge-prompt record needs a 'name'")
        names.append(rec["name"])
        if rec["name"] != name:
            continue
        if rec.get("type", "single") != "single":
            raise FastChatPromptError(
                f"{path}:{lineno}: prompt {name!r} is of type {rec.get('type')!r}; only 'single' "
                "(one answer graded on its own) is supported"
            )
        template = rec.get("prompt_template")
        if not isinstance(template, str):
            raise FastChatPromptError(f"{path}:{lineno}: prompt {name!r} has no prompt_template")
        unknown = _fields(template) - {"question", "answer", "question_1", "answer_1"}
        if unknown:
            raise FastChatPromptError(
                f"{path}:{lineno}: prompt {name!r} needs fields {sorted(unknown)} (reference answers "
                "or second turns), which single-turn judging cannot fill"
            )
        return FastChatPrompt(
            name=name,
            system_prompt=str(rec.get("system_prompt") or ""),
            prompt_template=template,
            source=f"{path}:{lineno}",
        )
    raise FastChatPromptError(f"{path}: no judge prompt named {name!r} (found: {names})")
