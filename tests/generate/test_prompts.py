"""Answer-time prompts equal the fine-tuning prompts, for chat-template and instruction-format models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from mentalchat.core.prompt_format import INSTRUCTION_FORMAT_ID, PromptFormatter
from mentalchat.generate.prompts import instruction_chat_template, prepare_prompts


@pytest.fixture(scope="module")
def no_template_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's tokenizer without a chat template (like a pretrained-only base model)."""
    folder = tmp_path_factory.mktemp("plain")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = None
    tok.save_pretrained(folder)
    for stale in folder.glob("chat_template*"):
        stale.unlink()
    return folder


@pytest.mark.parametrize("instruction", ["Be kind and practical.", "  padded instruction \n", ""])
@pytest.mark.parametrize("with_bos", [False, True])
def test_instruction_template_renders_the_training_format(no_template_model: Path, instruction: str, with_bos: bool) -> None:
    tok = AutoTokenizer.from_pretrained(no_template_model)
    formatter = PromptFormatter(tok, "instruction")
    question = "I can't sleep.\n\nAnd my chest hurts ### sometimes."
    msgs = [{"role": "user", "content": question}]
    if instruction.strip():
        msgs.insert(0, {"role": "system", "content": instruction})
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                   chat_template=instruction_chat_template(with_bos))
    expected = formatter.prompt_text(instruction, question)
    assert text == ((tok.bos_token or "") if with_bos else "") + expected


def test_model_without_template_gets_instruction_format_and_tokenizer_copy(no_template_model: Path, tmp_path: Path) -> None:
    prompts = prepare_prompts(str(no_template_model), "auto", "Be kind.", tmp_path / "work")
    assert prompts.kind == "instruction" and prompts.format_id == INSTRUCTION_FORMAT_ID
    assert prompts.engine_kwargs() == {"tokenizer": prompts.tokenizer_dir}
    copy = AutoTokenizer.from_pretrained(prompts.tokenizer_dir)
    rendered = copy.apply_chat_template([m.model_dump() for m in prompts.messages("Hello?")], tokenize=False,
                                        add_generation_prompt=True)
    assert rendered.endswith("Be kind.\n\n### Client\nHello?\n\n### Counsellor\n")
    # Reused, not rewritten, on the next call.
    again = prepare_prompts(str(no_template_model), "auto", "Be kind.", tmp_path / "work")
    assert again.tokenizer_dir == prompts.tokenizer_dir


def test_chat_template_model_keeps_its_template(tiny_model: Path, tmp_path: Path) -> None:
    prompts = prepare_prompts(str(tiny_model), "auto", "Be kind.", tmp_path / "work")
    assert prompts.kind == "chat_template" and prompts.tokenizer_dir is None and prompts.engine_kwargs() == {}
    assert [m.role for m in prompts.messages("Hi")] == ["system", "user"]
    forced = prepare_prompts(str(tiny_model), "instruction", "Be kind.", tmp_path / "work")
    assert forced.format_id == INSTRUCTION_FORMAT_ID and forced.tokenizer_dir
    assert not list((tmp_path / "work").glob(".*tmp*"))
    shutil.rmtree(tmp_path / "work")
