"""Typed stage configs loaded from YAML with dotted ``key=value`` overrides.

One YAML file holds every stage's section (``dataset``, ``finetune``, ``generate``, ``judge``,
``stats``) plus shared ``engines`` and ``run`` settings, so the pipeline and each job read the same
file. Each job validates only the part it needs with its own config class (see
:func:`load_stage_config`). Overrides are dotted paths from the file's root
(``finetune.lora.r=8``) or, for a job, from its own section (``lora.r=8``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mentalchat.errors import MentalchatError

__all__ = [
    "ConfigError",
    "StrictModel",
    "apply_overrides",
    "config_hash",
    "load_config_dict",
    "load_stage_config",
    "parse_override",
    "section_config",
    "validate_section",
]

T = TypeVar("T", bound=BaseModel)


class ConfigError(MentalchatError, ValueError):
    """A config file or override that cannot be used; the message names the file and key."""


class StrictModel(BaseModel):
    """Base for all config classes: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-typed value (``3`` → int, ``[1,2]`` → list)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _set_path(doc: dict[str, Any], path: list[str], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part!r} is not a mapping")
        node = child
    node[path[-1]] = value


def apply_overrides(
    doc: dict[str, Any], overrides: list[str], *, section: str | None = None
) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a config document (a deep copy is returned).

    With ``section`` set, a key whose first part is not a top-level key of the document is taken
    relative to that section, so ``python jobs/finetune.py lora.r=8`` works as users expect.
    """
    out = json.loads(json.dumps(doc))
    for item in overrides:
        path, value = parse_override(item)
        if section is not None and path[0] not in out and path[0] != section:
            path = [section, *path]
        _set_path(out, path, value)
    return out


def load_config_dict(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; ``include:`` (a path or list, relative to the file) merges bases first."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", path=path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        where = f"{path}:{line}" if line is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc}", path=path, line=line) from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    includes = doc.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict[str, Any] = {}
    for inc in includes:
        merged = _deep_merge(merged, load_config_dict(path.parent / inc))
    return _deep_merge(merged, doc)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_validation(err: ValidationError, source: str, section: str | None) -> str:
    lines = [f"{source}: invalid config" + (f" in section {section!r}" if section else "")]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if section:
            loc = f"{section}.{loc}" if loc else section
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


def validate_section(
    cls: type[T], doc: dict[str, Any], section: str | None, *, source: str = "<config>"
) -> T:
    """Validate ``doc[section]`` (or the whole doc) as ``cls``; errors name the file and key path."""
    data = doc if section is None else (doc.get(section) or {})
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source, section)) from None


def section_config(cls: type[T], doc: dict[str, Any], section: str, *, source: str = "<config>") -> T:
    """Validate one stage's section of a loaded document as ``cls``.

    Shared top-level sections (``engines``, ``run``, ``crisis_detector``) are copied into the stage section when the
    stage config declares a field of that name and the section does not set it itself.
    """
    stage = dict(doc.get(section) or {})
    for shared in ("engines", "run", "crisis_detector"):
        if shared in cls.model_fields and shared not in stage and shared in doc:
            stage[shared] = doc[shared]
    return validate_section(cls, {section: stage}, section, source=source)


def load_stage_config(
    cls: type[T], path: str | Path, overrides: list[str] | None = None, *, section: str
) -> T:
    """Load one stage's config class from a YAML file plus overrides (see :func:`section_config`)."""
    doc = apply_overrides(load_config_dict(path), overrides or [], section=section)
    return section_config(cls, doc, section, source=str(path))


def config_hash(model: BaseModel) -> str:
    """Stable short hash of a config, used to decide whether a stage's output can be reused."""
    payload = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
