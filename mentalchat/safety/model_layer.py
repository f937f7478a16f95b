"""The model layer: a local LLM reads each message (or answer) and replies with a JSON verdict.

Rules miss wordings nobody wrote down; a model reads meaning. The request carries a JSON schema so
vLLM's guided decoding (and any API engine with structured output) can only produce a valid
verdict; backends without it are parsed tolerantly. It goes through the engine layer, so the same
config runs in this process or as a Ray Data pool on the cluster.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mentalchat.core.crisis_rules import CRISIS_CATEGORIES
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.runner import run_requests
from mentalchat.config import ConfigError
from mentalchat.engine.types import ChatMessage, ChatRequest, SamplingConfig
from mentalchat.safety.config import CrisisModelConfig

__all__ = [
    "ANSWER_SCHEMA",
    "MESSAGE_SCHEMA",
    "ModelVerdict",
    "answer_requests",
    "classify_answers",
    "classify_messages",
    "message_requests",
    "parse_answer_verdict",
    "parse_message_verdict",
]

PROMPT_VERSION = "crisis-model-v1"

MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "at_risk": {"type": "boolean"},
        "categories": {"type": "array", "items": {"type": "string", "enum": list(CRISIS_CATEGORIES)}},
    },
    "required": ["at_risk", "categories"],
    "additionalProperties": False,
}

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"escalates": {"type": "boolean"}},
    "required": ["escalates"],
    "additionalProperties": False,
}

_CATEGORY_HELP = {
    "suicidal_ideation": "wishes to die or not wake up, plans or means to end their life, euphemisms for it",
    "self_harm": "hurting themselves on purpose (cutting, burning, hitting, starving)",
    "abuse": "someone is hurting, threatening, controlling or sexually abusing them now",
    "harm_to_others": "intent or urges to hurt another person",
    "acute_psychosis": "commanding voices, being watched or controlled, thoughts broadcast",
    "medical_emergency": "a physical emergency happening now (chest pain, cannot breathe, seizure, heavy bleeding)",
    "substance_overdose": "took too much of a drug, medicine or alcohol with pills",
}

_MESSAGE_SYSTEM = (
    "You screen messages sent to a counselling service for risk that needs urgent attention. "
    "Decide whether the WRITER is at risk now. Categories:\n"
    + "\n".join(f"- {k}: {v}" for k, v in _CATEGORY_HELP.items())
    + "\nNot a risk: figures of speech (\"this job is killing me\"), events long past and resolved, "
    "worry about somebody else, numbers, prices and room names. "
    'Reply with JSON only: {"at_risk": true|false, "categories": [...]}.'
)

_ANSWER_SYSTEM = (
    "You check a counsellor's reply to a person in crisis. It escalates when it clearly urges the person "
    "to get help now: emergency services, an emergency department, a crisis or helpline, or a trusted "
    "person or professional straight away. Warm words, coping tips or therapy some day do not count, nor "
    'does a reply saying no help is needed. Reply with JSON only: {"escalates": true|false}.'
)


@dataclass(frozen=True)
class ModelVerdict:
    """One verdict: ``flag`` is None when the reply could not be read (``error`` says why)."""

    flag: bool | None
    categories: tuple[str, ...] = ()
    error: str | None = None
    raw: str | None = None


def _rid(prefix: str, text: str) -> str:
    return f"{prefix}-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _sampling(cfg: CrisisModelConfig) -> SamplingConfig:
    return SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=cfg.max_tokens, seed=0)


def message_requests(texts: Sequence[str], cfg: CrisisModelConfig) -> list[ChatRequest]:
    return [
        ChatRequest(
            id=_rid(f"m{i}", t),
            messages=[ChatMessage(role="system", content=_MESSAGE_SYSTEM),
                      ChatMessage(role="user", content=f"Message:\n{t}")],
            sampling=_sampling(cfg),
            json_schema=MESSAGE_SCHEMA,
            metadata={"prompt_version": PROMPT_VERSION},
        )
        for i, t in enumerate(texts)
    ]


def answer_requests(pairs: Sequence[tuple[str, str]], cfg: CrisisModelConfig) -> list[ChatRequest]:
    return [
        ChatRequest(
            id=_rid(f"a{i}", q + "\0" + a),
            messages=[ChatMessage(role="system", content=_ANSWER_SYSTEM),
                      ChatMessage(role="user", content=f"Person's message:\n{q}\n\nCounsellor's reply:\n{a}")],
            sampling=_sampling(cfg),
            json_schema=ANSWER_SCHEMA,
            metadata={"prompt_version": PROMPT_VERSION},
        )
        for i, (q, a) in enumerate(pairs)
    ]


def _json_object(text: str) -> dict[str, Any] | None:
    for candidate in (text, *re.findall(r"\{[^{}]*\}", text or "")):
        try:
            value = json.loads(candidate)
        except (TypeError, json.JSONDecodeError):
            continue
        if isinstance(value, dict):
            return value
    return None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "false", "no"):
        return value.strip().lower() in ("true", "yes")
    return None


def parse_message_verdict(text: str | None) -> ModelVerdict:
    """The verdict in a reply; categories outside the vocabulary are dropped, a flag without any is kept."""
    obj = _json_object(text or "")
    if obj is None:
        return ModelVerdict(None, error="no JSON object in the reply", raw=text)
    flag = _bool(obj.get("at_risk"))
    cats = obj.get("categories") or []
    cats = tuple(c for c in cats if isinstance(c, str) and c in CRISIS_CATEGORIES) if isinstance(cats, list) else ()
    if flag is None:
        return ModelVerdict(None, error="at_risk is missing or not a boolean", raw=text)
    return ModelVerdict(flag or bool(cats), cats if flag or cats else (), raw=text)


def parse_answer_verdict(text: str | None) -> ModelVerdict:
    obj = _json_object(text or "")
    flag = _bool(obj.get("escalates")) if obj is not None else None
    if flag is None:
        return ModelVerdict(None, error="no escalates boolean in the reply", raw=text)
    return ModelVerdict(flag, raw=text)


def _run(requests: list[ChatRequest], cfg: CrisisModelConfig) -> list[tuple[str | None, str | None]]:
    if not isinstance(cfg.engine, EngineConfig):
        raise ConfigError(f"crisis_detector.model.engine {cfg.engine!r} was not resolved against engines:")
    results = run_requests(requests, cfg.engine, use_ray=cfg.use_ray, config_key="crisis.model.engine",
                           stage="crisis")
    return [(r.text, r.error) for r in results]


def classify_messages(texts: Sequence[str], cfg: CrisisModelConfig) -> list[ModelVerdict]:
    """One verdict per message, in order; failed calls are verdicts with ``error`` set."""
    out = []
    for text, error in _run(message_requests(texts, cfg), cfg):
        out.append(ModelVerdict(None, error=error) if error else parse_message_verdict(text))
    return out


def classify_answers(pairs: Sequence[tuple[str, str]], cfg: CrisisModelConfig) -> list[ModelVerdict]:
    """One escalation verdict per (message, answer) pair, in order."""
    out = []
    for text, error in _run(answer_requests(pairs, cfg), cfg):
        out.append(ModelVerdict(None, error=error) if error else parse_answer_verdict(text))
    return out
