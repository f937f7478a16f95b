"""Prompt formats at answer time, identical to what fine-tuning trained on.

The format is decided per base model by :class:`mentalchat.core.prompt_format.PromptFormatter` (the
same class the trainer uses): the tokenizer's chat template when it has one, else the project's
instruction format. The engines render prompts through a chat template, so for instruction-format
models this module writes a tokenizer copy whose chat template *is* the instruction format, and
checks that it renders exactly the formatter's prompt before any answer is generated.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mentalchat.core.prompt_format import (
    INSTRUCTION_TEMPLATE,
    INSTRUCTION_TEMPLATE_NO_SYSTEM,
    INSTRUCTION_TURN_SEPARATOR,
    PromptFormatter,
)
from mentalchat.engine.types import ChatMessage
from mentalchat.errors import MentalchatError
from mentalchat.io import atomic_dir

__all__ = ["ModelPrompts", "PromptFormatError", "instruction_chat_template", "prepare_prompts"]

log = logging.getLogger(__name__)


class PromptFormatError(MentalchatError, ValueError):
    """A base model whose prompt format cannot be reproduced at answer time."""


def instruction_chat_template(with_bos: bool) -> str:
    """A Jinja chat template that renders the instruction format (system → instruction, user → client).

    An earlier counsellor turn (multi-turn questions) renders as the trainer writes it
    (``PromptFormatter.encode_conversation``): the answer, the end-of-sequence token, then the turn separator.
    """
    head = INSTRUCTION_TEMPLATE.split("{instruction}")[1].split("{input}")[0]  # "\n\n### Client\n"
    client_head = INSTRUCTION_TEMPLATE_NO_SYSTEM.split("{input}")[0]  # "### Client\n"
    answer_head = INSTRUCTION_TEMPLATE_NO_SYSTEM.split("{input}")[1]  # "\n\n### Counsellor\n"
    sep = head[: len(head) - len(client_head)]  # "\n\n" between instruction and client
    j = json.dumps  # Jinja accepts JSON string literals
    return (
        ("{{ bos_token }}" if with_bos else "")
        + "{%- for message in messages -%}"
        + "{%- if message['role'] == 'system' -%}"
        + f"{{{{ message['content'] | trim }}}}{{{{ {j(sep)} }}}}"
        + "{%- elif message['role'] == 'user' -%}"
        + f"{{{{ {j(client_head)} + message['content'] }}}}"
        + "{%- elif message['role'] == 'assistant' -%}"
        + f"{{{{ {j(answer_head)} + message['content'] + eos_token + {j(INSTRUCTION_TURN_SEPARATOR)} }}}}"
        + "{%- endif -%}"
        + "{%- endfor -%}"
        + f"{{%- if add_generation_prompt -%}}{{{{ {j(answer_head)} }}}}{{%- endif -%}}"
    )


@dataclass(frozen=True)
class ModelPrompts:
    """How one base model is prompted: the format id stored with answers, and engine overrides."""

    format_id: str
    kind: str  # chat_template | instruction
    system_role: bool
    instruction: str
    tokenizer_dir: str | None  # a tokenizer copy carrying the instruction template, or None

    def messages(self, question: str) -> list[ChatMessage]:
        instruction = self.instruction.strip()
        if not instruction:
            return [ChatMessage(role="user", content=question)]
        if self.kind == "instruction" or self.system_role:
            return [ChatMessage(role="system", content=instruction), ChatMessage(role="user", content=question)]
        return [ChatMessage(role="user", content=f"{instruction}\n\n{question}")]

    def conversation(self, turns: Sequence[str], answers: Sequence[str]) -> list[ChatMessage]:
        """The messages that ask client turn ``len(turns)`` of a multi-turn question.

        ``answers`` are the model's own answers to the earlier turns (one fewer than ``turns``), so
        turn k is asked as [system, u1, a1, ..., uk], the instruction placed as :meth:`messages`
        places it; one turn gives exactly :meth:`messages`.
        """
        if not turns or len(answers) != len(turns) - 1:
            raise ValueError(f"conversation: {len(turns)} client turns need {max(len(turns) - 1, 0)} earlier "
                             f"answers, got {len(answers)}")
        out = self.messages(turns[0])
        for answer, turn in zip(answers, turns[1:], strict=True):
            out += [ChatMessage(role="assistant", content=answer), ChatMessage(role="user", content=turn)]
        return out

    def engine_kwargs(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer_dir} if self.tokenizer_dir else {}


def prepare_prompts(
    model_path: str, fmt: str, instruction: str, work_dir: str | Path, *, multi_turn: bool = False
) -> ModelPrompts:
    """Resolve a base model's prompt format; for the instruction format, write the tokenizer copy.

    ``multi_turn``: multi-turn questions will be asked, so the prompt of a second turn (with an
    earlier answer in it) is checked against the trainer's rendering of a conversation too.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    formatter = PromptFormatter(tok, fmt)  # type: ignore[arg-type]
    tokenizer_dir = None
    if formatter.kind == "instruction":
        probe = tok("a")["input_ids"]
        with_bos = bool(tok.bos_token) and bool(probe) and probe[0] == tok.bos_token_id
        template = instruction_chat_template(with_bos)
        digest = hashlib.sha256(f"{model_path}\0{template}".encode()).hexdigest()[:12]
        target = Path(work_dir) / f"tokenizer-{digest}"
        if not (target / "tokenizer_config.json").is_file():
            with atomic_dir(target) as tmp:
                tok.chat_template = template
                tok.save_pretrained(tmp)
        tok = AutoTokenizer.from_pretrained(target)
        tokenizer_dir = str(target)
    prompts = ModelPrompts(
        format_id=formatter.format_id,
        kind=formatter.kind,
        system_role=formatter.system_role,
        instruction=instruction,
        tokenizer_dir=tokenizer_dir,
    )
    # The engine renders messages with the (possibly replaced) chat template: it must give the
    # trainer's exact prompt, or tuned models would be asked in a format they never saw.
    sample = "How do I stop worrying at night?"
    rendered = tok.apply_chat_template(
        [m.model_dump() for m in prompts.messages(sample)], tokenize=False, add_generation_prompt=True
    )
    expected = formatter.prompt_text(instruction, sample)
    if formatter.kind == "instruction" and tokenizer_dir and rendered.startswith(tok.bos_token or "\0"):
        rendered = rendered[len(tok.bos_token) :]
    if rendered != expected:
        raise PromptFormatError(
            f"{model_path}: the answer-time prompt differs from the training prompt "
            f"(format {formatter.format_id}): {rendered!r} != {expected!r}"
        )
    if multi_turn:
        _check_second_turn(tok, formatter, prompts, model_path, instruction)
    return prompts


def _check_second_turn(tok: Any, formatter: PromptFormatter, prompts: ModelPrompts, model_path: str,
                       instruction: str) -> None:
    """Turn 2's prompt as the engine renders it must be the trainer's conversation up to that answer.

    Why: a model tuned on conversations learnt one rendering of earlier turns (the answer, its
    end-of-turn marker, the next client turn); asking it in another one would measure the format.
    A chat template that rewrites earlier turns cannot be checked this way: warned, not refused,
    since the untuned model is still asked in its own format.
    """
    from mentalchat.errors import DataError

    turns, answer = ["How do I stop worrying at night?", "And if that does not work?"], "Try writing it down."
    convo = [{"role": "user", "content": turns[0]}, {"role": "assistant", "content": answer},
             {"role": "user", "content": turns[1]}, {"role": "assistant", "content": "x"}]
    try:
        (c1, a1), (c2, _) = formatter._conversation_segments(instruction, convo)
    except DataError as exc:
        log.warning("%s: multi-turn prompts cannot be compared with training: %s", model_path, exc)
        return
    expected = c1 + a1 + c2
    rendered = tok.apply_chat_template([m.model_dump() for m in prompts.conversation(turns, [answer])],
                                       tokenize=False, add_generation_prompt=True)
    if prompts.tokenizer_dir and tok.bos_token and rendered.startswith(tok.bos_token):
        rendered = rendered[len(tok.bos_token):]
    if rendered != expected:
        raise PromptFormatError(
            f"{model_path}: the answer-time prompt of a second turn differs from the training conversation "
            f"(format {formatter.format_id}): {rendered!r} != {expected!r}"
        )
