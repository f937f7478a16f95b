"""Conversations on real tokenizers: the trained tokens are the answer stage's rendering, loss on counsellor turns.

The references are outside this module: the tokenizer's own chat template (``apply_chat_template``)
and the answer stage's instruction-format template (``generate/prompts.py``), each rendered and
tokenized as a whole, as the engine does before generating turn k.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.core.prompt_format import PromptFormatter
from mentalchat.errors import DataError
from mentalchat.generate.prompts import instruction_chat_template
from mentalchat.testing.finetune_data import INSTRUCTION

CONVERSATION = [
    {"role": "user", "content": "I feel tense before every shift at the hospital."},
    {"role": "assistant", "content": "That sounds draining. What happens in your body just before a shift?"},
    {"role": "user", "content": "My chest gets tight and I keep checking the rota."},
    {"role": "assistant", "content": "Noticing that is a good start. Could you try three slow breaths at the door?"},
    {"role": "user", "content": "I tried it yesterday and it helped a little."},
    {"role": "assistant", "content": "I am glad. Let us build on that small win together."},
]

# A template that rewrites earlier turns (only the last counsellor turn keeps its text, as templates
# that strip earlier reasoning do): not prefix-stable.
REWRITING_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' + (message['content'] if loop.last else '...') + '<|im_end|>\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
NO_SYSTEM_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('system role not supported') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)
KW = {"source_max_len": 256, "target_max_len": 256}


@pytest.fixture()
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _masked(tok, enc: dict, value: int) -> str:
    return tok.decode([t for t, m in zip(enc["input_ids"], enc["completion_mask"], strict=True) if m == value])


def _instruction_render(tok, instruction: str, messages: list[dict]) -> str:
    """The answer stage's prompt for the last turn plus that answer and its eos (its template, not ours)."""
    template = instruction_chat_template(with_bos=False)
    head = [{"role": "system", "content": instruction}] if instruction.strip() else []
    prompt = tok.apply_chat_template([*head, *messages[:-1]], chat_template=template, tokenize=False,
                                     add_generation_prompt=True)
    return prompt + messages[-1]["content"] + tok.eos_token


@pytest.mark.parametrize("fmt", ["chat_template", "instruction", "no_system"])
@pytest.mark.parametrize("size", ["short", "long_input", "long_output"])
def test_one_exchange_encodes_exactly_like_encode(tokenizer, fmt: str, size: str) -> None:
    if fmt == "instruction":
        tokenizer.chat_template = None
    elif fmt == "no_system":
        tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    fmt_ = PromptFormatter(tokenizer)
    user, answer = CONVERSATION[0]["content"], CONVERSATION[1]["content"]
    if size == "long_input":
        user = (user + " ") * 30
    elif size == "long_output":
        answer = (answer + " ") * 30
    kw = {"source_max_len": 64, "target_max_len": 24}
    one = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    assert fmt_.encode_conversation(INSTRUCTION, one, **kw) == fmt_.encode(INSTRUCTION, user, answer, **kw)


def test_chat_template_conversation_is_the_rendered_conversation(tokenizer) -> None:
    fmt = PromptFormatter(tokenizer)
    enc = fmt.encode_conversation(INSTRUCTION, CONVERSATION, **KW)
    rendered = tokenizer.apply_chat_template(fmt.conversation_messages(INSTRUCTION, CONVERSATION), tokenize=False)
    assert tokenizer.decode(enc["input_ids"]) == rendered
    assert enc["input_ids"] == tokenizer(rendered, add_special_tokens=False)["input_ids"]  # as the engine tokenizes
    answers = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    assert _masked(tokenizer, enc, 1) == "".join(f"{a}<|im_end|>\n" for a in answers)
    # every client turn and the template around it stays out of the loss
    unmasked = _masked(tokenizer, enc, 0)
    assert all(m["content"] in unmasked for m in CONVERSATION if m["role"] == "user")
    assert unmasked.count("<|im_start|>assistant\n") == 3 and INSTRUCTION in unmasked
    # each counsellor turn's prompt is what the answer stage sends for that turn
    for k in (1, 3, 5):
        prompt = tokenizer.apply_chat_template(fmt.conversation_messages(INSTRUCTION, CONVERSATION)[: k + 1],
                                               tokenize=False, add_generation_prompt=True)
        n = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert enc["completion_mask"][n - 1] == 0 and enc["completion_mask"][n] == 1


@pytest.mark.parametrize("instruction", [INSTRUCTION, ""])
def test_instruction_format_equals_the_answer_stage_template(tokenizer, instruction: str) -> None:
    tokenizer.chat_template = None
    fmt = PromptFormatter(tokenizer)
    for n in (4, 6):
        enc = fmt.encode_conversation(instruction, CONVERSATION[:n], **KW)
        rendered = _instruction_render(tokenizer, instruction, CONVERSATION[:n])
        assert tokenizer.decode(enc["input_ids"]) == rendered
        assert enc["input_ids"] == tokenizer(rendered, add_special_tokens=False)["input_ids"]
        answers = [m["content"] for m in CONVERSATION[:n] if m["role"] == "assistant"]
        assert _masked(tokenizer, enc, 1) == "".join(a + tokenizer.eos_token for a in answers)
        assert "\n\n### Client\n" + CONVERSATION[2]["content"] in _masked(tokenizer, enc, 0)


def test_template_without_system_role_folds_the_instruction_into_the_first_turn(tokenizer) -> None:
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    fmt = PromptFormatter(tokenizer)
    enc = fmt.encode_conversation(INSTRUCTION, CONVERSATION[:4], **KW)
    chat = fmt.conversation_messages(INSTRUCTION, CONVERSATION[:4])
    assert chat[0] == {"role": "user", "content": f"{INSTRUCTION}\n\n{CONVERSATION[0]['content']}"}
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    assert tokenizer.decode(enc["input_ids"]) == rendered  # one bos, at the start only
    assert enc["input_ids"].count(tokenizer.bos_token_id) == 1


def test_a_template_that_rewrites_earlier_turns_is_refused(tokenizer) -> None:
    tokenizer.chat_template = REWRITING_TEMPLATE
    fmt = PromptFormatter(tokenizer)
    with pytest.raises(DataError, match=r"not prefix-stable.*client turn 2.*prompt_format: instruction"):
        fmt.encode_conversation(INSTRUCTION, CONVERSATION, **KW)
    fmt.encode_conversation(INSTRUCTION, CONVERSATION[:2], **KW)  # one exchange never needs the check


def test_length_keeps_whole_exchanges_in_order(tokenizer) -> None:
    fmt = PromptFormatter(tokenizer)
    full = fmt.encode_conversation(INSTRUCTION, CONVERSATION, **KW)
    two = fmt.encode_conversation(INSTRUCTION, CONVERSATION[:4], **KW)
    one = fmt.encode(INSTRUCTION, CONVERSATION[0]["content"], CONVERSATION[1]["content"], **KW)
    assert full["input_ids"][: len(two["input_ids"])] == two["input_ids"]
    p1 = one["completion_mask"].count(0)  # the first prompt fits source_max_len; the rest is target room

    def within(limit: int) -> dict:
        return fmt.encode_conversation(INSTRUCTION, CONVERSATION, source_max_len=p1, target_max_len=limit - p1)

    # a budget between two and three exchanges keeps exactly two, whole
    assert within(len(two["input_ids"]) + 3) == two
    assert within(len(two["input_ids"])) == two
    assert within(len(two["input_ids"]) - 1)["input_ids"] == one["input_ids"]
    # a budget of exactly the whole conversation keeps it all
    assert within(len(full["input_ids"])) == full
    # below two exchanges: only the first, as encode() gives it
    tight = fmt.encode_conversation(INSTRUCTION, CONVERSATION, source_max_len=len(one["input_ids"]) - 20,
                                    target_max_len=20)
    assert tight == fmt.encode(INSTRUCTION, CONVERSATION[0]["content"], CONVERSATION[1]["content"],
                               source_max_len=len(one["input_ids"]) - 20, target_max_len=20)
    # a first answer cut at target_max_len: nothing follows it, however much room is left
    cut = fmt.encode_conversation(INSTRUCTION, CONVERSATION, source_max_len=1000, target_max_len=5)
    assert cut["completion_mask"].count(1) == 5 and CONVERSATION[2]["content"] not in tokenizer.decode(cut["input_ids"])


@pytest.mark.parametrize("roles", [[], ["user"], ["assistant", "user"], ["user", "user"],
                                   ["user", "assistant", "user"], ["system", "user", "assistant"]])
def test_conversations_must_alternate_from_the_client(tokenizer, roles: list[str]) -> None:
    messages = [{"role": r, "content": "x"} for r in roles]
    with pytest.raises(DataError, match="alternating, first user, last assistant"):
        PromptFormatter(tokenizer).encode_conversation(INSTRUCTION, messages, **KW)


def test_a_tokenizer_that_adds_bos_gets_one_at_the_start_only(tokenizer) -> None:
    """Llama-2-style tokenizers add bos themselves: the conversation starts with one, and still has every turn."""
    tokenizer.chat_template = None
    tokenizer.add_bos_token = True
    fmt = PromptFormatter(tokenizer)
    enc = fmt.encode_conversation(INSTRUCTION, CONVERSATION, **KW)
    assert enc["input_ids"][0] == tokenizer.bos_token_id and enc["input_ids"].count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(enc["input_ids"][1:]) == _instruction_render(tokenizer, INSTRUCTION, CONVERSATION)
    assert enc["input_ids"] == tokenizer(_instruction_render(tokenizer, INSTRUCTION, CONVERSATION))["input_ids"]


def test_an_end_of_turn_marker_other_than_eos(tokenizer) -> None:
    """Turns end with the template's marker (as the engine renders them); only the last kept turn gets eos too,
    as encode() gives a single answer (Llama-3-style templates: <|eot_id|> ends a turn, eos ends the text)."""
    tokenizer.eos_token = "<unk>"  # the template ends turns with <|im_end|>
    fmt = PromptFormatter(tokenizer)
    enc = fmt.encode_conversation(INSTRUCTION, CONVERSATION, **KW)
    rendered = tokenizer.apply_chat_template(fmt.conversation_messages(INSTRUCTION, CONVERSATION), tokenize=False)
    assert tokenizer.decode(enc["input_ids"]) == rendered + "<unk>"
    assert enc["input_ids"].count(tokenizer.eos_token_id) == 1 and enc["completion_mask"][-1] == 1
    two = fmt.encode_conversation(INSTRUCTION, CONVERSATION[:4], **KW)
    p1 = fmt.encode(INSTRUCTION, CONVERSATION[0]["content"], CONVERSATION[1]["content"], **KW)
    assert p1["input_ids"][-1] == tokenizer.eos_token_id  # encode() closes a single answer with eos
    # with room for two exchanges only, the second closes with eos and the first does not
    limit = len(two["input_ids"])
    n_prompt = p1["completion_mask"].count(0)
    kept = fmt.encode_conversation(INSTRUCTION, CONVERSATION, source_max_len=n_prompt,
                                   target_max_len=limit - n_prompt)
    assert kept == two and kept["input_ids"].count(tokenizer.eos_token_id) == 1
