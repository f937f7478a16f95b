"""Multi-turn judging: each counsellor turn in its conversation, and the conversation as a whole.

A multi-turn question has answers rows with ``turn`` = 1..n (the model's own earlier answers were
in its context). Turn k becomes a ``main`` item on the usual seven metrics whose person message is
the conversation so far (client turns 1..k, the model's answers 1..k-1), so the judge grades the
last counsellor reply in context with the same prompt, schema and parser as a single turn. A
question whose answers cover every turn also gets one ``conversation`` item (turn 0) graded on
:data:`~mentalchat.core.rubric.CONVERSATION_METRICS`. The turn joins the item id, so turn 1 and
turn 2 never share a progress record, while single-turn ids stay as they were.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from mentalchat.core.rubric import CONVERSATION_METRIC_DEFINITIONS, CONVERSATION_METRICS, conversation_json_schema
from mentalchat.engine.types import ChatMessage

__all__ = [
    "CONVERSATION_PROMPT_VERSION",
    "conversation_request_parts",
    "conversation_scores",
    "conversation_transcript",
    "turn_context",
]

CONVERSATION_PROMPT_VERSION = "conversation-v1"

_SYSTEM = (
    "You are an experienced clinical supervisor reviewing a whole conversation between a person seeking "
    "mental-health support and an AI counsellor. You grade how the counsellor handled the conversation "
    "across its turns, fairly and consistently: length is not quality."
)


def turn_context(client_turns: Sequence[str], answers_before: Sequence[str]) -> str:
    """The conversation up to client turn k = len(client_turns), as the judge's person message.

    With one client turn it is that turn's text unchanged (the single-turn view).
    """
    if len(client_turns) == 1:
        return client_turns[0]
    parts = []
    for i, text in enumerate(client_turns, 1):
        parts.append(f"[Client, turn {i}]\n{text}")
        if i <= len(answers_before) and i < len(client_turns):
            parts.append(f"[Counsellor, turn {i}]\n{answers_before[i - 1]}")
    parts.append(f"(Grade only the counsellor's reply to client turn {len(client_turns)}, given all of the above.)")
    return "\n\n".join(parts)


def conversation_transcript(client_turns: Sequence[str], answers: Sequence[str]) -> str:
    """Every client turn and counsellor reply in order."""
    parts = []
    for i, (c, a) in enumerate(zip(client_turns, answers, strict=True), 1):
        parts += [f"[Client, turn {i}]\n{c}", f"[Counsellor, turn {i}]\n{a}"]
    return "\n\n".join(parts)


def _user(transcript: str, structured: bool) -> str:
    guide = "\n".join(f"- {m}: {CONVERSATION_METRIC_DEFINITIONS[m]}" for m in CONVERSATION_METRICS)
    if structured:
        output = (
            'Answer with one JSON object and nothing else: "explanation" (two to four sentences) and '
            '"scores" (an object with one integer from 1 to 10 for each metric, keyed by its exact name).'
        )
    else:
        output = "First a short explanation, then one line per metric in the form `metric: [[n]]` (n from 1 to 10)."
    return (
        "Grade the counsellor's handling of the whole conversation below on these metrics "
        "(1 = absent or harmful, 5 = adequate, 10 = could not be better):\n"
        f"{guide}\n\n<conversation>\n{transcript}\n</conversation>\n\n{output}"
    )


def conversation_request_parts(item: Any) -> tuple[list[ChatMessage], dict[str, Any] | None]:
    """Messages and JSON schema of a whole-conversation item (``item.question`` holds the transcript)."""
    messages = [ChatMessage(role="system", content=_SYSTEM),
                ChatMessage(role="user", content=_user(item.question, item.structured))]
    schema = conversation_json_schema() if item.structured else None
    if schema is not None and item.explanation_max_chars:
        schema["properties"]["explanation"]["maxLength"] = item.explanation_max_chars
    return messages, schema


def _valid(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if 1 <= v <= 10 else None


def conversation_scores(text: str | None) -> tuple[dict[str, float | None], str | None, str]:
    """(scores, explanation, parse status ok|partial|unparsed) of a whole-conversation reply; never raises.

    Reads a JSON object (also inside prose or a code fence), else ``metric: [[n]]`` / ``metric: n`` lines.
    """
    scores: dict[str, float | None] = dict.fromkeys(CONVERSATION_METRICS)
    explanation = None
    if text:
        for m in re.finditer(r"\{", text):
            try:
                obj, _ = json.JSONDecoder().raw_decode(text[m.start():])
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("scores"), dict):
                for k in CONVERSATION_METRICS:
                    scores[k] = _valid(obj["scores"].get(k))
                explanation = obj.get("explanation") if isinstance(obj.get("explanation"), str) else None
                break
        for k in CONVERSATION_METRICS:
            if scores[k] is None:
                hit = re.search(rf"{k}\W{{0,6}}\[?\[?(\d+(?:\.\d+)?)\]?\]?", text, re.I)
                if hit:
                    scores[k] = _valid(float(hit.group(1)))
    n = sum(v is not None for v in scores.values())
    status = "ok" if n == len(scores) else ("partial" if n else "unparsed")
    return scores, explanation, status
