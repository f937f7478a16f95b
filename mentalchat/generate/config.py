"""Answer-stage configuration: which engine, which base models, which sampling.

The engine (a ``vllm`` engine under ``engines:``) is the template for every base model: its
``model`` is replaced by each base model in turn, LoRA is switched on when that base model has
adapters, and each row picks its adapter. The paper's sampling (temperature 0.7, top-p 0.5, up to
512 new tokens) is ``configs/paper.yaml``'s default; the parameters and the prompt format are stored
with every answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mentalchat.config import ConfigError, StrictModel
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import SamplingConfig

__all__ = ["BaseModelSpec", "GenerateConfig"]

PromptFormat = Literal["auto", "chat_template", "instruction"]


class BaseModelSpec(StrictModel):
    """A base model answered untuned (besides those that come with adapters in the manifest)."""

    path: str = Field(description="hub id, local folder or local:<kit model>")
    name: str | None = Field(None, description="model id in the answers table; default: the path's last part")
    prompt_format: PromptFormat = "auto"
    data_config: str = Field("base", description="base for the untuned models of the study; baseline for third-party models")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        tail = self.path.rstrip("/").split("/")[-1]
        return tail.removeprefix("local:") or self.path


class GenerateConfig(StrictModel):
    """The ``generate:`` section."""

    engine: str | EngineConfig = Field(
        description="a vllm engine: a name under engines:, or one written inline (its model is replaced per base model)"
    )
    engines: dict[str, EngineConfig] = Field(default_factory=dict)
    base_models: list[BaseModelSpec] = Field(
        default_factory=list, description="extra base models to answer with untuned"
    )
    include_base: bool = Field(True, description="also answer untuned with the base model of every adapter")
    sampling: SamplingConfig | None = Field(None, description="None: the engine's sampling")
    prompt_format: PromptFormat = Field(
        "auto", description="auto: the tokenizer's chat template when it has one, else the instruction format"
    )
    instruction: str | None = Field(
        None,
        description="the instruction sent with every question (system turn); None: the training data's "
        "default instruction, so tuned models see the prompt they were trained on; '' for none",
    )
    max_questions: int | None = Field(None, ge=1, description="answer only the first N single-turn and the first N multi-turn questions")
    crisis_probes: bool = Field(False, description="also answer the bundled crisis probe set (ids crisis-NN)")
    replicas: int | None = Field(None, ge=1, description="engine replicas (overrides the engine's vllm.replicas)")
    executor: Literal["ray", "local"] = Field(
        "ray", description="ray: engine replicas inside Ray Data (the job joins or starts a cluster); local: in-process"
    )
    engines_at_once: int | None = Field(
        None, ge=1, description="base models' engines answering at the same time on Ray; None: as many "
        "as fit the cluster together (else one after another); 1: always one after another"
    )
    resume: bool = Field(
        True, description="reuse answers an earlier run of the same output journaled before it crashed "
        "(same engine settings, sampling, instruction, prompt format and question text)"
    )
    fastchat_export: bool = Field(True, description="also write FastChat model_answer JSONL files")
    run: dict[str, Any] = Field(default_factory=dict)

    def engine_template(self) -> EngineConfig:
        if isinstance(self.engine, EngineConfig):
            cfg = self.engine
        else:
            try:
                cfg = self.engines[self.engine]
            except KeyError:
                raise ConfigError(
                    f"generate.engine {self.engine!r} is not declared under engines: (known: {sorted(self.engines)})"
                ) from None
        if cfg.backend not in ("vllm", "transformers"):
            raise ConfigError(f"generate.engine has backend {cfg.backend!r}; answers need vllm or transformers")
        return cfg

    def instruction_text(self) -> str:
        if self.instruction is not None:
            return self.instruction
        from mentalchat.core.prompt_format import DEFAULT_INSTRUCTION

        return DEFAULT_INSTRUCTION
