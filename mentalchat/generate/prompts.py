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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mentalchat.core.prompt_format import INSTRUCTION_TEMPLATE, INSTRUCTION_TEMPLATE_NO_SYSTEM, PromptFormatter
from mentalchat.engine.types import ChatMessage
from mentalchat.errors import MentalchatError
from mentalchat.io import atomic_dir

__all__ = ["ModelPrompts", "PromptFormatError", "instruction_chat_template", "prepare_prompts"]


class PromptFormatError(MentalchatError, ValueError):
    """A base model whose prompt format cannot be reproduced at answer time."""


def instruction_chat_template(with_bos: bool) -> str:
    """A Jinja chat template that renders the instruction format (system → instruction, user → client)."""
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
        + f"{{{{ {j(answer_head)} + message['content'] + eos_token + {j(sep)} }}}}"
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

    def engine_kwargs(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer_dir} if self.tokenizer_dir else {}


def prepare_prompts(model_path: str, fmt: str, instruction: str, work_dir: str | Path) -> ModelPrompts:
    """Resolve a base model's prompt format; for the instruction format, write the tokenizer copy."""
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
    return prompts
