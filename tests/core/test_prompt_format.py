"""Prompt formats on the tiny model's real tokenizer: chat template, instruction format, truncation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.core.prompt_format import INSTRUCTION_FORMAT_ID, PromptFormatter
from mentalchat.errors import DataError
from mentalchat.testing.finetune_data import INSTRUCTION

# A template in the style of Mistral-Instruct: no system role, alternation enforced.
NO_SYSTEM_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('system role not supported') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)


@pytest.fixture()
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_chat_template_prompt_and_answer_only_mask(tokenizer) -> None:
    fmt = PromptFormatter(tokenizer)
    assert fmt.kind == "chat_template" and fmt.system_role and fmt.format_id == "chat_template"
    prompt = fmt.prompt_text(INSTRUCTION, "I feel tense.")
    assert prompt == f"<|im_start|>system\n{INSTRUCTION}<|im_end|>\n<|im_start|>user\nI feel tense.<|im_end|>\n<|im_start|>assistant\n"
    enc = fmt.encode(INSTRUCTION, "I feel tense.", "Let us breathe.", source_max_len=256, target_max_len=64)
    ids, mask = enc["input_ids"], enc["completion_mask"]
    answer = [t for t, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(answer) == "Let us breathe.<|im_end|>\n"
    assert tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m]) == prompt
    assert mask == sorted(mask)  # prompt first, then answer


def test_instruction_format_without_chat_template(tokenizer) -> None:
    tokenizer.chat_template = None
    fmt = PromptFormatter(tokenizer)
    assert fmt.kind == "instruction" and fmt.format_id == INSTRUCTION_FORMAT_ID
    assert fmt.prompt_text("Be kind.", "I feel tense.") == "Be kind.\n\n### Client\nI feel tense.\n\n### Counsellor\n"
    assert fmt.prompt_text("", "Hi") == "### Client\nHi\n\n### Counsellor\n"
    enc = fmt.encode("Be kind.", "I feel tense.", "Breathe.", source_max_len=256, target_max_len=64)
    answer = [t for t, m in zip(enc["input_ids"], enc["completion_mask"], strict=True) if m]
    assert answer[-1] == tokenizer.eos_token_id and tokenizer.decode(answer[:-1]) == "Breathe."
    with pytest.raises(DataError, match="no chat template"):
        PromptFormatter(tokenizer, "chat_template")


def test_template_without_system_role_folds_the_instruction(tokenizer) -> None:
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    fmt = PromptFormatter(tokenizer)
    assert fmt.kind == "chat_template" and not fmt.system_role
    assert fmt.format_id == "chat_template:system-in-user"
    assert fmt.messages("Be kind.", "Hi") == [{"role": "user", "content": "Be kind.\n\nHi"}]
    assert fmt.prompt_text("Be kind.", "Hi") == "<s>[INST] Be kind.\n\nHi [/INST]"
    assert fmt.completion_text("Be kind.", "Hi", "Hello") == "Hello<|im_end|>"


def test_truncation_keeps_the_template_and_caps_both_sides(tokenizer) -> None:
    fmt = PromptFormatter(tokenizer)
    long_input = "I keep worrying about everything at work and at home. " * 40
    long_output = "Let us slow down and notice one thing at a time. " * 40
    enc = fmt.encode(INSTRUCTION, long_input, long_output, source_max_len=48, target_max_len=20)
    n_prompt = enc["completion_mask"].count(0)
    assert n_prompt <= 48 and enc["completion_mask"].count(1) == 20
    prompt = tokenizer.decode(enc["input_ids"][:n_prompt])
    assert prompt.startswith(f"<|im_start|>system\n{INSTRUCTION}") and prompt.endswith("<|im_start|>assistant\n")
    with pytest.raises(DataError, match="source_max_len=4 is too small"):
        fmt.encode(INSTRUCTION, long_input, "ok", source_max_len=4, target_max_len=8)
