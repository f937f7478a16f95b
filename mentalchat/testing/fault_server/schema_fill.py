"""Answer text: the default responder and the JSON-schema filler, plus the token count.

Why: judges and dataset stages ask for JSON matching a schema, and their tests need answers that
validate, differ between prompts and repeat for the same prompt, without a model.

A *responder* ``(messages, params) -> str`` writes the answer text. ``messages`` is a list of
``{"role": "system"|"user"|"assistant", "content": str}`` whatever the protocol; ``params`` holds
``protocol`` ("openai"/"gemini"), ``model``, ``max_tokens``, ``temperature``, ``top_p``, ``seed``,
``json_schema`` (the requested schema or None), ``json_mode`` (JSON without a schema) and ``body``
(the raw request). The default responder (:func:`default_responder`) echoes the last user message,
or, when a schema is requested, fills it with values derived from a hash of the prompt (the same
prompt always gets the same JSON; different prompts get different scores).

Pairwise prompts (two replies in ``<reply_A>`` / ``<reply_B>`` tags, as the judge stage's
``pairwise-v*`` prompts write them) are answered by the server's ``pairwise`` rule when one is set
(``params["pairwise"]``, :data:`PAIRWISE_RULES`): ``first`` always prefers Reply A (a judge with a
pure position bias), ``second`` always Reply B, ``content`` the reply whose text hashes higher
wherever it stands (a consistent judge; ``tie`` for two identical texts). The verdict goes into the
schema's enum property that offers ``A`` and ``B`` (or, without a schema, a final ``[[A]]``). With
no rule such prompts are filled like any other, so the verdict follows the whole prompt's hash
and, like a noisy judge, often changes when the replies swap places.

Token counts are whitespace-separated words (prompt: all message contents; completion: the answer).
When the answer has more words than ``max_tokens`` it is cut and ``finish_reason`` is ``length``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Callable
from typing import Any

Responder = Callable[[list[dict[str, str]], dict[str, Any]], str]


def _hash_int(*parts: str) -> int:
    """A stable 64-bit number for ``parts`` (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def fill_schema(schema: dict[str, Any], seed: str = "", *, _root: dict[str, Any] | None = None, _path: str = "$") -> Any:
    """A value that validates against ``schema`` (JSON Schema or Gemini's OpenAPI subset).

    Deterministic in ``seed``: numbers are drawn inside ``minimum``/``maximum`` from a hash of the
    seed and the path, enums pick a member the same way, objects fill every property.
    """
    root = _root if _root is not None else schema
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return fill_schema(target, seed, _root=root, _path=_path)
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if schema.get("enum"):
        options = schema["enum"]
        return copy.deepcopy(options[_hash_int(seed, _path) % len(options)])
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            if key == "allOf":
                merged: dict[str, Any] = {}
                for sub in schema[key]:
                    merged.update(sub)
                return fill_schema(merged, seed, _root=root, _path=_path)
            return fill_schema(schema[key][0], seed, _root=root, _path=_path)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if str(t).lower() != "null"), typ[0] if typ else None)
    typ = str(typ).lower() if typ is not None else ("object" if "properties" in schema else "string")
    if typ == "object":
        props = schema.get("properties") or {}
        return {
            name: fill_schema(sub, seed, _root=root, _path=f"{_path}.{name}") for name, sub in props.items()
        }
    if typ == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        if "maxItems" in schema:
            n = min(n, int(schema["maxItems"]))
        items = schema.get("items") or {"type": "string"}
        return [fill_schema(items, seed, _root=root, _path=f"{_path}[{i}]") for i in range(n)]
    if typ in ("integer", "number"):
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
            lo = schema["exclusiveMinimum"] + (1 if typ == "integer" else 1e-6)
        if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
            hi = schema["exclusiveMaximum"] - (1 if typ == "integer" else 1e-6)
        lo = float(lo) if lo is not None else 0.0
        hi = float(hi) if hi is not None else lo + 100.0
        if typ == "integer":
            lo_i, hi_i = math.ceil(lo), math.floor(hi)
            return lo_i + _hash_int(seed, _path) % max(hi_i - lo_i + 1, 1)
        frac = (_hash_int(seed, _path) % 10_000) / 10_000
        return round(lo + frac * (hi - lo), 4)
    if typ == "boolean":
        return bool(_hash_int(seed, _path) % 2)
    if typ == "null":
        return None
    text = f"filler {_path.rsplit('.', 1)[-1]} {_hash_int(seed, _path) % 1000}"
    min_len = int(schema.get("minLength", 0))
    if len(text) < min_len:
        text = text + "x" * (min_len - len(text))
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text


def schema_in_prompt(text: str) -> dict[str, Any] | None:
    """A JSON Schema written into the prompt (an object with ``type: object`` and ``properties``), if any.

    Stands in for a capable model that follows a schema given in words, as a client does when the
    provider cannot enforce one (JSON mode, or plain text).
    """
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and obj.get("type") == "object" and isinstance(obj.get("properties"), dict):
            return obj
        start = text.find("{", start + 1)
    return None


#: The pairwise rules a server can apply (``FaultServer(pairwise=...)``, ``--pairwise``).
PAIRWISE_RULES = ("first", "second", "content")
_REPLY_RE = re.compile(r"<reply_([AB])>\n?(.*?)\n?</reply_\1>", re.S)


def _pairwise_letter(text: str, rule: str) -> str | None:
    """The verdict ``rule`` gives on a prompt holding Reply A and Reply B, or None if it holds no pair."""
    replies = {m.group(1): m.group(2) for m in _REPLY_RE.finditer(text)}
    if set(replies) != {"A", "B"}:
        return None
    if rule == "first":
        return "A"
    if rule == "second":
        return "B"
    if rule == "content":
        if replies["A"] == replies["B"]:
            return "tie"
        return "A" if _hash_int(replies["A"]) > _hash_int(replies["B"]) else "B"
    raise ValueError(f"unknown pairwise rule {rule!r}; known: {PAIRWISE_RULES}")


def _pairwise_reply(prompt: str, last_user: str, schema: dict[str, Any] | None, rule: str) -> str | None:
    letter = _pairwise_letter(last_user, rule)
    if letter is None:
        return None
    if schema is None:
        why = "Neither reply is better." if letter == "tie" else f"Reply {letter} serves the person better."
        return f"{why}\n[[{letter}]]"
    obj = fill_schema(schema, prompt)
    props = schema.get("properties") or {}
    for name, sub in props.items():
        options = sub.get("enum") if isinstance(sub, dict) else None
        if isinstance(obj, dict) and options and {"A", "B"} <= set(options) and letter in options:
            obj[name] = letter
    return json.dumps(obj, ensure_ascii=False)


def default_responder(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """Echo the last user message; with a schema (requested, or written into the prompt), JSON
    filling it (deterministic per prompt); a pairwise prompt under a ``pairwise`` rule gets that
    rule's verdict."""
    prompt = "\n".join(m["content"] for m in messages)
    rule = params.get("pairwise")
    if rule:
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        schema = params.get("json_schema")
        if schema is None and '"properties"' in last:
            schema = schema_in_prompt(last)
        reply = _pairwise_reply(prompt, last, schema, rule)
        if reply is not None:
            return reply
    if params.get("json_schema") is not None:
        return json.dumps(fill_schema(params["json_schema"], prompt), ensure_ascii=False)
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    written = schema_in_prompt(last) if '"properties"' in last else None
    if written is not None:
        return json.dumps(fill_schema(written, prompt), ensure_ascii=False)
    if params.get("json_mode"):
        return json.dumps({"echo": messages[-1]["content"] if messages else ""}, ensure_ascii=False)
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return f"echo: {last_user}"


def _count_tokens(text: str) -> int:
    """Whitespace-separated words: predictable in tests and the same for both protocols."""
    return len(text.split())

