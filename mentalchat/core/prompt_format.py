"""Prompt formats shared by training and answering: the instruction and how a model is prompted.

Why here: fine-tuning renders (instruction, input, output) into the exact token sequence a model
learns, and the answer stage must ask tuned models in that same format, so both stages use this
one :class:`PromptFormatter`. A base model whose tokenizer has a chat template sees the
instruction as the system turn and the client's text as the user turn (folded into the user turn
when the template has no system role); a base model without a template gets
:data:`INSTRUCTION_TEMPLATE`. :data:`DEFAULT_INSTRUCTION` is the fixed instruction stored with
every pair (the MentalChat16K schema's ``instruction``) and used at answer time by default.
"""

from __future__ import annotations

from typing import Any, Literal

from mentalchat.errors import DataError

__all__ = [
    "DEFAULT_INSTRUCTION",
    "INSTRUCTION_FORMAT_ID",
    "INSTRUCTION_TEMPLATE",
    "INSTRUCTION_TEMPLATE_NO_SYSTEM",
    "PromptFormatter",
]

DEFAULT_INSTRUCTION = (
    "You are a supportive mental health counsellor. Read what the person shares, show that you "
    "understand how they feel, and answer with warmth, clarity and practical next steps. If they "
    "may be in danger, urge them to get immediate help from a crisis line or emergency services."
)

INSTRUCTION_FORMAT_ID = "mentalchat-instruction-v1"
# For base models without a chat template. Section markers on their own lines are cheap in any
# tokenizer and rare in counselling text, so the model learns where the client ends and it begins.
INSTRUCTION_TEMPLATE = "{instruction}\n\n### Client\n{input}\n\n### Counsellor\n"
INSTRUCTION_TEMPLATE_NO_SYSTEM = "### Client\n{input}\n\n### Counsellor\n"

_SENTINEL = "\u2063MENTALCHAT-SYSTEM\u2063"


class PromptFormatter:
    """Renders (instruction, input[, output]) for one tokenizer, in training and at answer time.

    ``fmt`` is ``auto`` (chat template when the tokenizer has one), ``chat_template`` or
    ``instruction``. :attr:`format_id` names the resolved format for manifests and answers.
    """

    def __init__(self, tokenizer: Any, fmt: Literal["auto", "chat_template", "instruction"] = "auto"):
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if fmt == "chat_template" and not has_template:
            raise DataError(
                f"prompt_format=chat_template but the tokenizer of {getattr(tokenizer, 'name_or_path', '?')} "
                "has no chat template"
            )
        self.kind: Literal["chat_template", "instruction"] = (
            "chat_template" if (fmt == "chat_template" or (fmt == "auto" and has_template)) else "instruction"
        )
        self.system_role = self.kind == "chat_template" and self._template_keeps_system()

    @property
    def format_id(self) -> str:
        if self.kind == "instruction":
            return INSTRUCTION_FORMAT_ID
        return "chat_template" if self.system_role else "chat_template:system-in-user"

    def _template_keeps_system(self) -> bool:
        msgs = [{"role": "system", "content": _SENTINEL}, {"role": "user", "content": "hi"}]
        try:
            text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        except Exception:  # templates that reject a system turn raise (e.g. Mistral-Instruct)
            return False
        return _SENTINEL in text

    def messages(self, instruction: str, input: str) -> list[dict[str, str]]:
        """Chat messages for a chat-template model (what an OpenAI-style chat call should send)."""
        instruction = (instruction or "").strip()
        if not instruction:
            return [{"role": "user", "content": input}]
        if self.system_role:
            return [{"role": "system", "content": instruction}, {"role": "user", "content": input}]
        return [{"role": "user", "content": f"{instruction}\n\n{input}"}]

    def prompt_text(self, instruction: str, input: str) -> str:
        """The exact prompt string the model was trained on (ends where the answer starts)."""
        if self.kind == "instruction":
            if (instruction or "").strip():
                return INSTRUCTION_TEMPLATE.format(instruction=instruction.strip(), input=input)
            return INSTRUCTION_TEMPLATE_NO_SYSTEM.format(input=input)
        return self.tokenizer.apply_chat_template(
            self.messages(instruction, input), tokenize=False, add_generation_prompt=True
        )

    def completion_text(self, instruction: str, input: str, output: str) -> str:
        """What follows the prompt in training: the answer and its end-of-turn marker."""
        if self.kind == "instruction":
            return output + (self.tokenizer.eos_token or "")
        prompt = self.prompt_text(instruction, input)
        msgs = [*self.messages(instruction, input), {"role": "assistant", "content": output}]
        full = self.tokenizer.apply_chat_template(msgs, tokenize=False)
        if not full.startswith(prompt):
            raise DataError(
                f"chat template of {getattr(self.tokenizer, 'name_or_path', '?')}: the conversation with the "
                "answer does not start with the generation prompt; set prompt_format: instruction"
            )
        return full[len(prompt):]

    # -- tokens ---------------------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _needs_bos(self, prompt: str) -> bool:
        tok = self.tokenizer
        bos = getattr(tok, "bos_token", None)
        if not bos or prompt.startswith(bos):
            return False
        probe = tok("a")["input_ids"]
        return bool(probe) and probe[0] == tok.bos_token_id

    def encode(
        self, instruction: str, input: str, output: str, *, source_max_len: int, target_max_len: int
    ) -> dict[str, list[int]]:
        """Token ids and the completion mask (1 on answer tokens: the only ones in the loss).

        The prompt is cut to ``source_max_len`` tokens by shortening the client's text (then the
        instruction), never the template, so the generation prompt always survives; the answer
        is cut to ``target_max_len`` tokens.
        """
        prompt = self.prompt_text(instruction, input)
        prompt_ids = self._ids(prompt)
        if len(prompt_ids) > source_max_len:
            prompt_ids = self._shorten(instruction, input, source_max_len)
        if self._needs_bos(prompt):
            prompt_ids = [self.tokenizer.bos_token_id, *prompt_ids]
        completion_ids = self._ids(self.completion_text(instruction, input, output))
        eos = self.tokenizer.eos_token_id
        if eos is not None and eos not in completion_ids:
            completion_ids.append(eos)
        completion_ids = completion_ids[:target_max_len]
        return {
            "input_ids": prompt_ids + completion_ids,
            "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
        }

    def _shorten(self, instruction: str, input: str, limit: int) -> list[int]:
        tok = self.tokenizer
        for field in ("input", "instruction"):
            text = input if field == "input" else instruction
            ids = self._ids(text)
            keep = len(ids)
            for _ in range(6):
                cut = tok.decode(ids[: max(keep, 0)], skip_special_tokens=True)
                if field == "input":
                    input = cut
                else:
                    instruction = cut
                prompt_ids = self._ids(self.prompt_text(instruction, input))
                excess = len(prompt_ids) - limit
                if excess <= 0:
                    return prompt_ids
                if keep <= 0:
                    break
                keep -= excess
        raise DataError(
            f"source_max_len={limit} is too small for the prompt template of "
            f"{getattr(tok, 'name_or_path', '?')} ({len(self._ids(self.prompt_text('', '')))} tokens empty)"
        )
