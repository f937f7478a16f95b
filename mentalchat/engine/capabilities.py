"""What a provider's model accepts, and how a request is shaped to fit it.

Why: providers differ per model family in what a chat call may carry (structured output as a
strict JSON Schema, JSON mode only, or neither; ``max_tokens`` or ``max_completion_tokens``;
whether temperature, seed or a system message are allowed), and they answer 400 to anything
else. The paper's GPT-4 judge (gpt-4-1106-preview) has JSON mode but not Structured Outputs, so
a strict-schema request fails on every item. The table in ``mentalchat/data/model_capabilities.yaml``
says what each family takes, an engine config's ``capabilities:`` block overrides it, and
:class:`RequestShape` is what the engine sends *now*: when a provider still refuses a parameter,
:meth:`RequestShape.downgrade` gives the next weaker shape (json_schema → json_object with the
schema in the prompt → text read by the tolerant parser), which the engine keeps for the rest of
the run and reports.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import Field

from mentalchat.config import StrictModel
from mentalchat.engine.types import ChatMessage, ChatRequest

__all__ = [
    "STRUCTURED_ORDER",
    "CapabilityOverrides",
    "Downgrade",
    "RequestShape",
    "Retirement",
    "StructuredMode",
    "capabilities_for",
    "retirement_for",
    "schema_instruction",
    "shape_messages",
]

StructuredMode = Literal["json_schema", "openapi_schema", "json_object", "text"]
MaxTokensParam = Literal["max_tokens", "max_completion_tokens"]

#: Strongest first; a downgrade moves one step to the right (openapi_schema sits beside json_schema).
STRUCTURED_ORDER: tuple[StructuredMode, ...] = ("json_schema", "openapi_schema", "json_object", "text")

#: Parameters a provider may refuse, as :class:`~mentalchat.engine.retry.CallError.unsupported` names them.
Param = Literal["response_format", "max_tokens", "temperature", "seed", "system_role"]


class CapabilityOverrides(StrictModel):
    """An engine's own answer to "what does this model take", field by field (None: the table's)."""

    structured: StructuredMode | None = Field(None, description="json_schema | openapi_schema | json_object | text")
    max_tokens_param: MaxTokensParam | None = None
    temperature: bool | None = Field(None, description="false: send no temperature / top_p")
    seed: bool | None = None
    system_role: bool | None = Field(None, description="false: fold system messages into the first user turn")


@dataclasses.dataclass(frozen=True)
class Downgrade:
    """One change to what an engine sends, made because the provider refused a parameter."""

    param: str
    before: str
    after: str

    def __str__(self) -> str:
        return f"{self.param}: {self.before} -> {self.after}"


@dataclasses.dataclass(frozen=True)
class RequestShape:
    """What an engine puts into its requests; immutable, so a call knows which shape it was sent with."""

    structured: StructuredMode = "json_schema"
    max_tokens_param: MaxTokensParam = "max_tokens"
    temperature: bool = True
    seed: bool = True
    system_role: bool = True

    def downgrade(self, param: str) -> tuple[RequestShape, Downgrade] | None:
        """The next weaker shape after ``param`` was refused, or None when nothing is left to give up."""
        if param == "response_format":
            if self.structured == "text":
                return None
            after: StructuredMode = "json_object" if self.structured in ("json_schema", "openapi_schema") else "text"
            return dataclasses.replace(self, structured=after), Downgrade(param, self.structured, after)
        if param == "max_tokens":
            after_param: MaxTokensParam = "max_completion_tokens" if self.max_tokens_param == "max_tokens" else "max_tokens"
            return dataclasses.replace(self, max_tokens_param=after_param), Downgrade(param, self.max_tokens_param, after_param)
        if param in ("temperature", "top_p") and self.temperature:
            return dataclasses.replace(self, temperature=False), Downgrade("temperature", "sent", "provider default")
        if param == "seed" and self.seed:
            return dataclasses.replace(self, seed=False), Downgrade(param, "sent", "not sent")
        if param == "system_role" and self.system_role:
            return dataclasses.replace(self, system_role=False), Downgrade(param, "system message", "folded into the user turn")
        return None


@dataclasses.dataclass(frozen=True)
class Retirement:
    """A model the provider has shut down, with what it recommends instead."""

    model: str
    shutdown: str
    replacement: str | None

    def describe(self) -> str:
        instead = f"; the provider recommends {self.replacement}" if self.replacement else ""
        return f"{self.model} was shut down by the provider ({self.shutdown}){instead}"


@functools.cache
def _table() -> dict[str, Any]:
    text = resources.files("mentalchat").joinpath("data/model_capabilities.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _bare(model: str) -> str:
    name = model.strip()
    return name.removeprefix("models/")


def capabilities_for(provider: str, model: str, overrides: CapabilityOverrides | None = None) -> RequestShape:
    """The shape an engine starts with: the table's first matching family, then the config's overrides."""
    fields: dict[str, Any] = {}
    for entry in _table().get(provider, []):
        if re.search(entry["match"], _bare(model)):
            fields = {k: v for k, v in entry.items() if k != "match"}
            break
    if overrides is not None:
        fields.update(overrides.model_dump(exclude_none=True))
    return RequestShape(**fields)


def retirement_for(provider: str, model: str) -> Retirement | None:
    """The provider's shutdown notice for ``model``, if the table knows one."""
    for entry in (_table().get("retired") or {}).get(provider, []):
        if re.search(entry["match"], _bare(model)):
            return Retirement(_bare(model), str(entry["shutdown"]), entry.get("replacement"))
    return None


def schema_instruction(schema: dict[str, Any]) -> str:
    """The words that carry a schema when the provider cannot enforce it (they also say "JSON",
    which OpenAI's JSON mode requires somewhere in the messages)."""
    return (
        "Reply with a single JSON object and nothing else. It must validate against this JSON Schema:\n"
        + json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    )


def shape_messages(request: ChatRequest, shape: RequestShape) -> list[ChatMessage]:
    """The messages as sent under ``shape``: the schema in the prompt below json_schema, and system
    messages folded into the first user turn for models without a system role."""
    messages = list(request.messages)
    if request.json_schema is not None and shape.structured in ("json_object", "text"):
        note = schema_instruction(request.json_schema)
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
        if last_user is None:
            messages.append(ChatMessage(role="user", content=note))
        else:
            m = messages[last_user]
            messages[last_user] = ChatMessage(role="user", content=f"{m.content}\n\n{note}")
    if not shape.system_role and any(m.role == "system" for m in messages):
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        rest = [m for m in messages if m.role != "system"]
        first_user = next((i for i, m in enumerate(rest) if m.role == "user"), None)
        if first_user is None:
            rest.insert(0, ChatMessage(role="user", content=system))
        else:
            rest[first_user] = ChatMessage(role="user", content=f"{system}\n\n{rest[first_user].content}")
        messages = rest
    return messages
