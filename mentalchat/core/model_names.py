"""Model name → (base model, data configuration), for answers and judgments that lack them.

Our own stages write ``base_model`` and ``data_config`` into every answer and judgment. Files
from elsewhere (the paper's FastChat folders) carry only a model name, so a configurable mapping
supplies them: explicit entries first, then ordered regex rules whose ``base`` group is put
through ``base_aliases``, then the list of untuned base names. A name that nothing matches is
reported as unmapped; it is never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import Field, field_validator

from mentalchat.config import StrictModel

__all__ = ["ModelEntry", "ModelMapConfig", "ModelRule", "paper_model_map"]

DataConfig = str  # base | synthetic | interview | combined | baseline (free text allowed)


class ModelEntry(StrictModel):
    """Where one model comes from. ``base`` is ``None`` for baselines (nothing to compare to)."""

    base: str | None
    config: DataConfig


class ModelRule(StrictModel):
    """``pattern`` (a Python regex, searched) with a named group ``base`` → ``config``."""

    pattern: str
    config: DataConfig

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            rx = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex {value!r}: {exc}") from None
        if "base" not in rx.groupindex:
            raise ValueError(f"rule pattern {value!r} needs a named group (?P<base>...)")
        return value


_PAPER_BASES = [
    "Llama-2-7b-hf",
    "Mistral-7B-Instruct-v0.2",
    "Mistral-7B-v0.1",
    "Mixtral-8x7B-Instruct-v0.1",
    "Mixtral-8x7B-v0.1",
    "vicuna-7b-v1.5",
    "zephyr-7b-alpha",
]
_PAPER_BASELINES = ["ChatPsychiatrist", "Samantha-1.11-7b", "samantha-1.2-mistral-7b"]
_PAPER_RULES = [
    ModelRule(pattern=r"^finetune_[^_]+_(?P<base>.+?)_paraphrase2_interview_", config="interview"),
    ModelRule(pattern=r"^finetune_[^_]+_(?P<base>.+?)_gpt_interview_", config="combined"),
    ModelRule(pattern=r"^(?P<base>.+?)-gpt-\d+$", config="synthetic"),
]
_PAPER_ALIASES = {
    "llama2-7b": "Llama-2-7b-hf",
    "vicuna-7b": "vicuna-7b-v1.5",
    "zephyr-7b": "zephyr-7b-alpha",
}


class ModelMapConfig(StrictModel):
    """The mapping. Every field defaults to the paper's (see :func:`paper_model_map`), so a
    config that adds ``models:`` entries keeps the paper's rules; set a field to ``[]``/``{}``
    to drop them."""

    bases: list[str] = Field(default_factory=lambda: list(_PAPER_BASES),
                             description="untuned base model names")
    baselines: list[str] = Field(default_factory=lambda: list(_PAPER_BASELINES),
                                 description="third-party comparison models")
    rules: list[ModelRule] = Field(default_factory=lambda: [r.model_copy() for r in _PAPER_RULES],
                                   description="tried in order")
    base_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(_PAPER_ALIASES),
        description="what a rule's base group says → the base's name",
    )
    models: dict[str, ModelEntry] = Field(
        default_factory=dict, description="explicit entries; they win over everything else"
    )

    def lookup(self, name: str) -> ModelEntry | None:
        """The entry for ``name``, or ``None`` when nothing maps it."""
        if name in self.models:
            return self.models[name]
        if name in self.baselines:
            return ModelEntry(base=None, config="baseline")
        if name in self.bases:
            return ModelEntry(base=name, config="base")
        for rule in self.rules:
            m = re.search(rule.pattern, name)  # re caches compiled patterns
            if m:
                base = m.group("base")
                return ModelEntry(base=self.base_aliases.get(base, base), config=rule.config)
        return None

    def map_names(self, names: Iterable[str]) -> tuple[dict[str, ModelEntry], list[str]]:
        """Map many names; returns (mapped, unmapped names sorted)."""
        mapped: dict[str, ModelEntry] = {}
        unmapped: list[str] = []
        for name in sorted(set(names)):
            entry = self.lookup(name)
            if entry is None:
                unmapped.append(name)
            else:
                mapped[name] = entry
        return mapped, unmapped


def paper_model_map() -> ModelMapConfig:
    """The mapping for the MentalChat16K authors' FastChat files (31 models).

    ``<name>-gpt-<date>`` were tuned on the synthetic data only,
    ``finetune_<org>_<base>_paraphrase2_interview_…`` on the interview data only,
    ``finetune_<org>_<base>_gpt_interview_…`` on both; the seven plain names are the untuned
    bases; ChatPsychiatrist and the two Samantha models are third-party baselines.
    """
    return ModelMapConfig()
