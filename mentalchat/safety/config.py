"""Settings of the crisis detector (``crisis:`` in the dataset and judge sections, or ``jobs/crisis.py --config``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mentalchat.config import ConfigError, StrictModel
from mentalchat.engine.config import EngineConfig

__all__ = ["CrisisClassifierConfig", "CrisisDetectorConfig", "CrisisModelConfig", "Layer"]

Layer = Literal["rules", "classifier", "model"]


class CrisisModelConfig(StrictModel):
    """The model layer: a local LLM asked for a JSON verdict (guided decoding where the backend has it)."""

    engine: EngineConfig | str = Field(
        description="an engine, or the name of one under engines:; vLLM runs on the cluster through Ray Data when Ray is up"
    )
    max_tokens: int = Field(96, ge=16, description="reply budget of one verdict")
    use_ray: bool | None = Field(None, description="None: Ray Data for vLLM when Ray is initialised")
    fail_open: bool = Field(
        True, description="a reply the layer cannot read counts as a flag (safety first), never as a clear"
    )


class CrisisClassifierConfig(StrictModel):
    """The classifier layer: n-gram logistic regressions trained on the dev splits (messages only)."""

    path: str | None = Field(None, description="a classifier JSON file; None: the bundled one (trained on dev, dev2)")


class CrisisDetectorConfig(StrictModel):
    """Which layers run and how their verdicts combine (answers: the rules and the model layer; the
    classifier reads messages only)."""

    layers: list[Layer] = Field(default_factory=lambda: ["rules", "classifier"], min_length=1)
    combine: Literal["any", "all"] = Field(
        "any", description="any: flag when one layer flags (recall); all: only when every layer agrees (precision)"
    )
    classifier: CrisisClassifierConfig = Field(default_factory=CrisisClassifierConfig)
    model: CrisisModelConfig | None = None

    @model_validator(mode="after")
    def _model_given(self) -> CrisisDetectorConfig:
        if "model" in self.layers and self.model is None:
            raise ValueError("layers includes 'model' but crisis.model (engine: ...) is not set")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers repeat: {self.layers}")
        return self

    def resolve(self, engines: dict[str, EngineConfig]) -> CrisisDetectorConfig:
        """The same settings with an engine given by name replaced by its declaration."""
        if self.model is None or isinstance(self.model.engine, EngineConfig):
            return self
        name = self.model.engine
        if name not in engines:
            raise ConfigError(f"crisis_detector.model.engine: {name!r} is not declared under engines: "
                              f"(known: {sorted(engines)})")
        return self.model_copy(update={"model": self.model.model_copy(update={"engine": engines[name]})})
