"""Judge work items: one judge call each, with a deterministic id.

The id hashes everything that defines the call's purpose (kind, judge, prompt version, question,
model, answer text, variant; for a pairwise item also the second model and its answer, in the order
shown), so a rerun of the same sweep finds the same ids in the progress store and skips what is
done, while a changed answer or prompt version is a new item.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mentalchat.core.rubric import judgment_json_schema
from mentalchat.engine.types import ChatMessage, ChatRequest, SamplingConfig
from mentalchat.judge.config import PromptSpec
from mentalchat.judge.fastchat_prompt import load_fastchat_prompt
from mentalchat.judge.prompts import (
    CRISIS_SCHEMA,
    PAIRWISE_SCHEMA,
    render_crisis_prompt,
    render_pairwise_prompt,
    render_prompt,
)

__all__ = ["ItemKind", "PromptRenderer", "WorkItem", "build_request", "item_id", "make_renderer"]

#: main: a benchmark answer; empty / padded / repeat: reliability controls; crisis: escalation check;
#: pairwise: two answers compared (``model``/``answer`` shown first, ``model_b``/``answer_b`` second).
#: conversation: a whole multi-turn conversation (turn 0, the conversation metrics).
ItemKind = Literal["main", "empty", "padded", "repeat", "crisis", "pairwise", "conversation"]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def item_id(
    kind: str, judge: str, prompt_version: str, question_id: str, model: str, answer: str, variant: int = 0,
    model_b: str | None = None, answer_b: str | None = None, turn: int | None = None,
) -> str:
    """The item's id. The second answer and the turn join the payload only when given, so
    single-answer, single-turn ids (and the caches keyed by them) stay exactly as they were."""
    fields: list[object] = [kind, judge, prompt_version, question_id, model, _digest(answer), variant]
    if model_b is not None or answer_b is not None:
        fields += [model_b, _digest(answer_b or "")]
    if turn is not None:
        fields += ["turn", turn]
    payload = json.dumps(fields, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class WorkItem:
    """One judge call and the identity of the answer it grades."""

    kind: str
    judge: str  # label stored in the judgments table
    engine: str  # engine name in the config
    prompt_version: str
    question_id: str
    question: str
    model: str
    answer: str
    base_model: str | None = None
    data_config: str | None = None
    structured: bool = True
    variant: int = 0
    #: pairwise items: the answer shown second (``model``/``answer`` are shown first)
    model_b: str | None = None
    answer_b: str | None = None
    #: multi-turn questions: 1..n grades that turn (``question`` then holds the conversation so far),
    #: 0 the whole conversation; None for a single-turn question
    turn: int | None = None
    explanation_max_chars: int | None = field(default=None, compare=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @functools.cached_property
    def id(self) -> str:  # noqa: A003 - hashed once per item: a sweep asks for it many times
        return item_id(
            self.kind, self.judge, self.prompt_version, self.question_id, self.model, self.answer, self.variant,
            self.model_b, self.answer_b, self.turn,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PromptRenderer = Callable[[str, str], list[ChatMessage]]


def make_renderer(prompt: PromptSpec, *, structured: bool) -> PromptRenderer:
    """A function (question, answer) -> messages for one prompt spec."""
    if prompt.is_fastchat:
        fc = load_fastchat_prompt(prompt.fastchat_file or "", prompt.fastchat_name or "")
        return fc.render
    version = prompt.version or ""
    render_prompt(version, "", "", structured=structured)  # fail early on an unknown version

    def render(question: str, answer: str) -> list[ChatMessage]:
        return render_prompt(version, question, answer, structured=structured)

    return render


@functools.lru_cache(maxsize=16)
def _judgment_schema(explanation_max_chars: int | None) -> dict[str, Any]:
    """One schema object per length cap, shared by the sweep's requests (nothing mutates it after this)."""
    schema = judgment_json_schema()
    if explanation_max_chars:
        schema["properties"]["explanation"]["maxLength"] = explanation_max_chars
    return schema


def build_request(
    item: WorkItem, renderers: dict[tuple[str, bool], PromptRenderer], sampling: SamplingConfig
) -> ChatRequest:
    """The chat request for an item. ``repeat`` items get a distinct seed, so they bypass the cache."""
    if item.kind == "crisis":
        messages = render_crisis_prompt(item.question, item.answer, structured=item.structured)
        schema = copy.deepcopy(CRISIS_SCHEMA) if item.structured else None
        if schema is not None and item.explanation_max_chars:
            schema["properties"]["reason"]["maxLength"] = item.explanation_max_chars
    elif item.kind == "conversation":
        from mentalchat.judge.multiturn import conversation_request_parts

        messages, schema = conversation_request_parts(item)
    elif item.kind == "pairwise":
        messages = render_pairwise_prompt(
            item.prompt_version, item.question, item.answer, item.answer_b or "", structured=item.structured
        )
        schema = copy.deepcopy(PAIRWISE_SCHEMA) if item.structured else None
        if schema is not None and item.explanation_max_chars:
            schema["properties"]["reason"]["maxLength"] = item.explanation_max_chars
    else:
        messages = renderers[(item.prompt_version, item.structured)](item.question, item.answer)
        schema = _judgment_schema(item.explanation_max_chars) if item.structured else None
    if item.kind == "repeat":
        sampling = sampling.model_copy(update={"seed": 7919 * (item.variant + 1)})
    return ChatRequest(id=item.id, messages=messages, sampling=sampling, json_schema=schema)
