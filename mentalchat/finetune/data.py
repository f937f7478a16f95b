"""Training data for stage 2: data configurations, held-out splits and prompt formats.

A data configuration selects rows of the ``qa_pairs`` table by their ``source``: ``synthetic``,
``interview`` or ``combined`` (both). The held-out split is decided per row by a hash of its id,
so a row held out of ``synthetic`` is also held out of ``combined`` and no configuration evaluates
on another's training rows.

Prompts: a base model whose tokenizer has a chat template sees the instruction as the system turn
and the client's text as the user turn (folded into the user turn when the template has no system
role). A base model without a template gets :data:`INSTRUCTION_TEMPLATE`. The same
:class:`PromptFormatter` renders prompts at answer time, so training and generation agree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from mentalchat.errors import MentalchatError
from mentalchat.schemas import read_table

__all__ = [
    "INSTRUCTION_FORMAT_ID",
    "INSTRUCTION_TEMPLATE",
    "DataError",
    "PromptFormatter",
    "Split",
    "encode_rows",
    "load_qa_pairs",
    "make_splits",
    "select_config",
    "split_table",
]

SOURCES = {"synthetic": ("synthetic",), "interview": ("interview",), "combined": ("synthetic", "interview")}

INSTRUCTION_FORMAT_ID = "mentalchat-instruction-v1"
# For base models without a chat template. Section markers on their own lines are cheap in any
# tokenizer and rare in counselling text, so the model learns where the client ends and it begins.
INSTRUCTION_TEMPLATE = "{instruction}\n\n### Client\n{input}\n\n### Counsellor\n"
INSTRUCTION_TEMPLATE_NO_SYSTEM = "### Client\n{input}\n\n### Counsellor\n"

_SENTINEL = "\u2063MENTALCHAT-SYSTEM\u2063"


class DataError(MentalchatError, ValueError):
    """Training data that cannot be used; the message names the dataset and configuration."""


def load_qa_pairs(path: str | Path) -> pa.Table:
    """Read and validate a ``qa_pairs`` Parquet file or folder (errors name the file)."""
    return read_table(path, "qa_pairs")


def select_config(table: pa.Table, data_config: str, *, source: str = "<dataset>") -> pa.Table:
    """Rows of one data configuration; an empty selection is an error naming what is missing."""
    if data_config not in SOURCES:
        raise DataError(f"{source}: unknown data configuration {data_config!r}; known: {sorted(SOURCES)}")
    wanted = pa.array(list(SOURCES[data_config]))
    out = table.filter(pc.is_in(table.column("source"), value_set=wanted))
    if out.num_rows == 0:
        present = sorted(set(table.column("source").to_pylist()))
        raise DataError(
            f"{source}: data configuration {data_config!r} is empty: no rows with source in "
            f"{list(SOURCES[data_config])} (sources present: {present or 'none'})"
        )
    return out


def _unit_hash(row_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Split:
    train: pa.Table
    eval: pa.Table


def split_table(
    table: pa.Table, *, eval_fraction: float, eval_max_rows: int, seed: int, source: str = "<dataset>"
) -> Split:
    """Hold out rows whose id hashes below ``eval_fraction`` (at least one, at most ``eval_max_rows``)."""
    if table.num_rows < 2:
        raise DataError(f"{source}: needs at least 2 rows for a train/eval split, has {table.num_rows}")
    scores = [_unit_hash(i, seed) for i in table.column("id").to_pylist()]
    order = sorted(range(len(scores)), key=scores.__getitem__)
    n_eval = sum(1 for s in scores if s < eval_fraction)
    n_eval = min(max(n_eval, 1), eval_max_rows, table.num_rows - 1)
    eval_idx = sorted(order[:n_eval])
    train_idx = sorted(order[n_eval:])
    return Split(train=table.take(train_idx), eval=table.take(eval_idx))


def make_splits(
    path: str | Path,
    data_configs: list[str],
    *,
    eval_fraction: float,
    eval_max_rows: int,
    seed: int,
) -> dict[str, Split]:
    """Validate the dataset and split every requested configuration (all errors before any training)."""
    table = load_qa_pairs(path)
    ids = table.column("id")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        raise DataError(f"{path}: column 'id' has duplicate values")
    return {
        name: split_table(
            select_config(table, name, source=str(path)),
            eval_fraction=eval_fraction,
            eval_max_rows=eval_max_rows,
            seed=seed,
            source=f"{path} [{name}]",
        )
        for name in data_configs
    }


# ---------------------------------------------------------------------------------------------
# Prompt formats
# ---------------------------------------------------------------------------------------------
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


def encode_rows(
    formatter: PromptFormatter, table: pa.Table, *, source_max_len: int, target_max_len: int
) -> list[dict[str, list[int]]]:
    """Encode every row of a ``qa_pairs`` table for SFTTrainer (pre-tokenized prompt-completion)."""
    cols = table.select(["instruction", "input", "output"]).to_pydict()
    return [
        formatter.encode(i, x, o, source_max_len=source_max_len, target_max_len=target_max_len)
        for i, x, o in zip(cols["instruction"], cols["input"], cols["output"], strict=True)
    ]
