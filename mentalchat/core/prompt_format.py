"""Prompt formats shared by training and answering: the instruction and how a model is prompted.

Why here: fine-tuning renders (instruction, input, output) into the exact token sequence a model
learns, and the answer stage must ask tuned models in that same format, so both stages use this
one :class:`PromptFormatter`. A base model whose tokenizer has a chat template sees the
instruction as the system turn and the client's text as the user turn (folded into the user turn
when the template has no system role); a base model without a template gets
:data:`INSTRUCTION_TEMPLATE`. :data:`DEFAULT_INSTRUCTION` is the fixed instruction stored with
every pair (the MentalChat16K schema's ``instruction``) and used at answer time by default.

Conversations (:meth:`PromptFormatter.encode_conversation`) render as the answer stage renders a
later turn: every earlier client and counsellor turn in context, in the same format, with the loss
on the counsellor turns only.
"""

from __future__ import annotations

from typing import Any, Literal

from mentalchat.errors import DataError

__all__ = [
    "DEFAULT_INSTRUCTION",
    "INSTRUCTION_FORMAT_ID",
    "INSTRUCTION_TEMPLATE",
    "INSTRUCTION_TEMPLATE_NO_SYSTEM",
    "INSTRUCTION_TURN_SEPARATOR",
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

# What follows a counsellor turn's end-of-sequence token before the next client turn in the
# instruction format (the answer stage's template, generate/prompts.py, renders the same).
INSTRUCTION_TURN_SEPARATOR = "\n\n"

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

    # -- conversations ----------------------------------------------------------------------------
    def conversation_messages(self, instruction: str, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """Chat messages of a whole conversation: the instruction placed as :meth:`messages` places it."""
        _check_turns(messages)
        first = self.messages(instruction, messages[0]["content"])
        return [*first, *({"role": m["role"], "content": m["content"]} for m in messages[1:])]

    def _conversation_segments(self, instruction: str, messages: list[dict[str, str]]) -> list[tuple[str, str]]:
        """(client part, counsellor part) text per exchange; their concatenation is the rendered conversation.

        The client part of exchange k runs from the end of counsellor turn k-1 to the end of the
        generation prompt of turn k (the answer stage's prompt for turn k ends exactly there); the
        counsellor part is what the template adds for that answer: its text and end-of-turn marker.
        """
        if self.kind == "instruction":
            return self._instruction_segments(instruction, messages)
        tok = self.tokenizer
        name = getattr(tok, "name_or_path", "?")
        chat = self.conversation_messages(instruction, messages)
        n_head = len(chat) - len(messages)  # the system turn, when the template keeps one
        segments, done = [], ""
        for k in range(0, len(messages), 2):
            upto_user, upto_answer = chat[: n_head + k + 1], chat[: n_head + k + 2]
            prompt = tok.apply_chat_template(upto_user, tokenize=False, add_generation_prompt=True)
            full = tok.apply_chat_template(upto_answer, tokenize=False)
            turn = k // 2 + 1
            if not prompt.startswith(done):
                raise DataError(
                    f"chat template of {name} is not prefix-stable: the prompt of client turn {turn} does not "
                    "start with the conversation rendered up to counsellor turn "
                    f"{turn - 1} (the template rewrites earlier turns), so a multi-turn conversation cannot be "
                    "trained as the answer stage renders it; set prompt_format: instruction for this model"
                )
            if not full.startswith(prompt):
                raise DataError(
                    f"chat template of {name}: the conversation with counsellor turn {turn} does not start with "
                    "its generation prompt; set prompt_format: instruction"
                )
            segments.append((prompt[len(done):], full[len(prompt):]))
            done = full
        return segments

    def _instruction_segments(self, instruction: str, messages: list[dict[str, str]]) -> list[tuple[str, str]]:
        eos = self.tokenizer.eos_token or ""
        segments = []
        for k in range(0, len(messages), 2):
            user, answer = messages[k]["content"], messages[k + 1]["content"]
            if k == 0:
                client = self.prompt_text(instruction, user)
            else:
                client = INSTRUCTION_TURN_SEPARATOR + INSTRUCTION_TEMPLATE_NO_SYSTEM.format(input=user)
            segments.append((client, answer + eos))
        return segments

    def encode_conversation(
        self, instruction: str, messages: list[dict[str, str]], *, source_max_len: int, target_max_len: int
    ) -> dict[str, list[int]]:
        """Token ids and completion mask of a whole conversation (1 on counsellor turns only).

        ``messages``: user/assistant turns alternating, first user, last assistant. The first
        exchange is encoded exactly as :meth:`encode` encodes it (same truncation), so a
        one-exchange conversation is a single-turn pair. Later exchanges follow whole, in order,
        while the total stays within ``source_max_len + target_max_len``; the first that does not
        fit ends the sequence (a cut turn would teach answers to context the model never sees at
        answer time), and none follow a first exchange that had to be cut. The mask covers each
        counsellor turn's text and end-of-turn marker; the last kept turn ends with the
        end-of-sequence token, as in :meth:`encode`.
        """
        _check_turns(messages)
        first = self.encode(instruction, messages[0]["content"], messages[1]["content"],
                            source_max_len=source_max_len, target_max_len=target_max_len)
        if len(messages) == 2:
            return first
        tok = self.tokenizer
        eos = tok.eos_token_id
        segments = self._conversation_segments(instruction, messages)
        client, answer = segments[0]
        client_ids, answer_ids = self._ids(client), self._ids(answer)
        closing = [eos] if eos is not None and eos not in answer_ids else []
        if len(client_ids) > source_max_len or len(answer_ids) + len(closing) > target_max_len:
            return first  # the first exchange was cut (as encode() cuts it): nothing may follow it
        head = [tok.bos_token_id] if self._needs_bos(client) else []
        ids = [*head, *client_ids]
        mask = [0] * len(ids)
        if first["input_ids"] != [*ids, *answer_ids, *closing]:  # the two renderings must agree
            raise DataError(
                f"{getattr(tok, 'name_or_path', '?')}: the conversation's first exchange renders unlike the "
                "single-turn prompt; set prompt_format: instruction"
            )
        ids += answer_ids
        mask += [1] * len(answer_ids)
        limit = source_max_len + target_max_len
        for client, answer in segments[1:]:
            client_ids, next_answer = self._ids(client), self._ids(answer)
            closing = 1 if eos is not None and eos not in next_answer else 0
            if len(ids) + len(client_ids) + len(next_answer) + closing > limit:
                break
            ids += client_ids + next_answer
            mask += [0] * len(client_ids) + [1] * len(next_answer)
            answer_ids = next_answer
        if eos is not None and eos not in answer_ids:
            ids.append(eos)
            mask.append(1)
        return {"input_ids": ids, "completion_mask": mask}


def _check_turns(messages: list[dict[str, str]]) -> None:
    """A conversation alternates client and counsellor turns, starts with the client, ends with the counsellor."""
    roles = [m.get("role") for m in messages]
    want = ["user", "assistant"] * (len(roles) // 2)
    if not roles or len(roles) % 2 or roles != want:
        raise DataError(
            f"a conversation needs user/assistant turns alternating, first user, last assistant; got roles {roles}"
        )
