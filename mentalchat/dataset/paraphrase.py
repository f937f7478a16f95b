"""Interview path: turn a de-identified page into one caregiver question and one coach answer.

Requests are built from ``text_deid`` only (the raw page never reaches a model). The engine is
asked for guided JSON where it supports it; :func:`parse_pair` also reads JSON inside prose or
code fences and labelled text (``Question: ... Answer: ...``), since not every backend obeys.
The parsed pair is de-identified again (the model may invent or repeat an identifier) before
any filter or table sees it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mentalchat.engine.types import ChatMessage, ChatRequest, ChatResult, SamplingConfig
from mentalchat.errors import MentalchatError

__all__ = [
    "PROMPT_VERSION",
    "ParseError",
    "Processed",
    "build_request",
    "pair_schema",
    "parse_pair",
    "process_result",
]

PROMPT_VERSION = "interview-paraphrase-v1"

SYSTEM_PROMPT = """You help build training data for a counselling assistant that supports family \
caregivers. You will receive one page from an interview with a caregiver. Personal details on the \
page were replaced by bracketed placeholders such as [NAME_1] or [DATE_2].

Write two things based on the worries, feelings and circumstances on the page:
1. "question": what this caregiver might write to a counsellor, in their own first-person voice. \
Describe the situation in a few sentences and end with a question. At least {min_words} words.
2. "answer": a reply from a supportive coach. Acknowledge the feelings, reflect the situation, \
and offer concrete, practical suggestions. If anyone may be in danger, urge immediate help \
(emergency services or a crisis line). At least {min_words} words.

Never use names, places, dates, numbers that identify anyone, or bracketed placeholders: refer to \
people by their role (my mother, the nurse). Do not copy sentences from the page.
Reply with one JSON object with the keys "question" and "answer" and nothing else."""

USER_PROMPT = 'Interview page:\n"""\n{page}\n"""'


def pair_schema(max_chars: int = 4000) -> dict[str, Any]:
    """JSON schema for guided decoding (also valid for OpenAI strict mode)."""
    field = {"type": "string", "minLength": 1, "maxLength": max_chars}
    return {
        "type": "object",
        "properties": {"question": dict(field), "answer": dict(field)},
        "required": ["question", "answer"],
        "additionalProperties": False,
    }


def build_request(
    request_id: str,
    text_deid: str,
    *,
    min_words: int,
    json_schema: bool,
    max_chars: int = 4000,
    max_tokens: int | None = None,
    base_sampling: SamplingConfig | None = None,
    metadata: dict[str, Any] | None = None,
) -> ChatRequest:
    sampling = None
    if max_tokens is not None:
        sampling = (base_sampling or SamplingConfig()).model_copy(update={"max_tokens": max_tokens})
    return ChatRequest(
        id=request_id,
        messages=[
            ChatMessage(role="system", content=SYSTEM_PROMPT.format(min_words=max(min_words, 1))),
            ChatMessage(role="user", content=USER_PROMPT.format(page=text_deid)),
        ],
        sampling=sampling,
        json_schema=pair_schema(max_chars) if json_schema else None,
        metadata=metadata or {},
    )


class ParseError(MentalchatError, ValueError):
    """The model's text holds no question/answer pair."""


_Q_KEYS = ("question", "caregiver_question", "caregiver question", "q", "input", "prompt")
_A_KEYS = ("answer", "coach_answer", "coach answer", "a", "output", "response", "reply")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_LABELLED = re.compile(
    r"(?is)\**\s*(?:caregiver(?:'s)?\s+)?question\s*\**\s*[:\-]\s*\**(?P<q>.+?)"
    r"\n?\s*\**\s*(?:coach(?:'s)?\s+)?(?:answer|response|reply)\s*\**\s*[:\-]\s*\**(?P<a>.+)$"
)


def _from_obj(obj: Any) -> tuple[str, str] | None:
    if isinstance(obj, list) and obj:
        obj = obj[0]
    if not isinstance(obj, dict):
        return None
    low = {str(k).strip().lower(): v for k, v in obj.items()}
    q = next((low[k] for k in _Q_KEYS if isinstance(low.get(k), str) and low[k].strip()), None)
    a = next((low[k] for k in _A_KEYS if isinstance(low.get(k), str) and low[k].strip()), None)
    return (q.strip(), a.strip()) if q and a else None


def _json_candidates(text: str) -> list[str]:
    out = [text.strip()]
    out += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        out.append(text[start:end + 1])
    return out


def parse_pair(text: str | None) -> tuple[str, str]:
    """(question, answer) from JSON, fenced JSON, JSON inside prose, or labelled text."""
    if not text or not text.strip():
        raise ParseError("empty output")
    for cand in _json_candidates(text):
        for attempt in (cand, re.sub(r",\s*([}\]])", r"\1", cand)):  # tolerate trailing commas
            try:
                pair = _from_obj(json.loads(attempt, strict=False))
            except (json.JSONDecodeError, ValueError):
                continue
            if pair:
                return pair
    m = _LABELLED.search(text.replace("\r", ""))
    if m:
        q = m.group("q").strip().strip('*"').strip()
        a = m.group("a").strip().strip('*"').strip()
        if q and a:
            return q, a
    snippet = text.strip()[:60].replace("\n", " ")
    raise ParseError(f"no question/answer pair in the output (starts {snippet!r})")


@dataclass
class Processed:
    """What became of one page's result: a pair, or a reject with the filter and reason."""

    question: str | None
    answer: str | None
    filter: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.filter is None


def process_result(result: ChatResult, deid: Any, *, min_words: int) -> Processed:
    """Parse, de-identify again, then filter. ``deid`` is a :class:`~.deid.Deidentifier`."""
    from mentalchat.dataset.filters import too_short, truncated

    if not result.ok:
        return Processed(None, None, "engine_error", (result.error or "no text")[:500])
    try:
        q, a = parse_pair(result.text)
    except ParseError as exc:
        cut = truncated(result.finish_reason)
        text = deid.redact_output(result.text or "")[0].text
        if cut:
            return Processed(None, text[:2000], "truncated", f"{cut}; {exc}")
        return Processed(None, text[:2000], "unparseable", str(exc))
    q_clean, a_clean = (r.text for r in deid.redact_output(q, a))
    cut = truncated(result.finish_reason)
    if cut:
        return Processed(q_clean, a_clean, "truncated", cut)
    for what, value in (("question", q_clean), ("answer", a_clean)):
        reason = too_short(value, min_words, what)
        if reason:
            return Processed(q_clean, a_clean, "too_short", reason)
    return Processed(q_clean, a_clean)
