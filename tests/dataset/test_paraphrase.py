"""Paraphrase requests, the tolerant parser and post-processing."""

from __future__ import annotations

import json

import pytest

from mentalchat.dataset.config import DeidConfig
from mentalchat.dataset.deid import get_deidentifier
from mentalchat.dataset.paraphrase import ParseError, build_request, pair_schema, parse_pair, process_result
from mentalchat.engine.types import ChatResult


@pytest.mark.parametrize("text", [
    '{"question": "Q?", "answer": "A."}',
    'Sure:\n```json\n{"question": "Q?", "answer": "A.",}\n```',
    'Here you go {"Caregiver_Question": "Q?", "Response": "A."} hope that helps',
    "**Question:** Q?\n**Answer:** A.",
    "Question - Q?\nCoach answer: A.",
])
def test_parse_pair_tolerates_formats(text: str) -> None:
    assert parse_pair(text) == ("Q?", "A.")


@pytest.mark.parametrize("text", ["", "just some words", '{"question": "only one"}'])
def test_parse_pair_errors(text: str) -> None:
    with pytest.raises(ParseError):
        parse_pair(text)


def test_request_carries_only_the_deidentified_page() -> None:
    req = build_request("t-1:2", "Caregiver: [NAME_1] is tired.", min_words=40, json_schema=True, max_tokens=300)
    assert req.json_schema == pair_schema()
    assert req.messages[-1].content.endswith('"""\nCaregiver: [NAME_1] is tired.\n"""')
    assert req.sampling is not None and req.sampling.max_tokens == 300
    assert build_request("x", "p", min_words=1, json_schema=False).json_schema is None


def _res(text: str | None, finish: str = "stop", error: str | None = None) -> ChatResult:
    return ChatResult(id="x", text=text, finish_reason=finish, provider="vllm", model="m", error=error)


def test_process_result_redacts_filters_and_explains() -> None:
    deid = get_deidentifier(DeidConfig())
    long = " ".join(["word"] * 45)
    ok = process_result(_res(json.dumps({"question": f"My aunt Perpetua Vandersloot is ill. {long}?",
                                         "answer": f"Call 303-555-0144 today. {long}"})), deid, min_words=40)
    assert ok.ok and "Vandersloot" not in ok.question and "303-555-0144" not in ok.answer
    short = process_result(_res(json.dumps({"question": "Short?", "answer": long})), deid, min_words=40)
    assert short.filter == "too_short" and short.reason == "question has 1 words (< 40)"
    cut = process_result(_res('{"question": "Why', finish="length"), deid, min_words=1)
    assert cut.filter == "truncated"
    err = process_result(_res(None, "error", "boom"), deid, min_words=1)
    assert err.filter == "engine_error" and err.reason == "boom"
    bad = process_result(_res("I won't do JSON, Mr. Abernathy-Lowe."), deid, min_words=1)
    assert bad.filter == "unparseable" and "Abernathy" not in bad.answer
