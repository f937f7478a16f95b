"""Judge stage configuration: which judges, which prompt versions, budget, controls.

Judges refer to engines declared once under the config file's ``engines:`` section, so pointing a
judge at another endpoint (a local vLLM OpenAI server, a proxy) is a one-line override such as
``engines.gpt4-judge.base_url=http://127.0.0.1:8000/v1``. A sweep is the product of answer sets,
judges and prompt versions, run as one job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from mentalchat.config import ConfigError, StrictModel
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import SamplingConfig
from mentalchat.safety.config import CrisisDetectorConfig

__all__ = [
    "CrisisConfig",
    "JudgeConfig",
    "JudgeSpec",
    "PairwiseConfig",
    "PromptSpec",
    "ReliabilityConfig",
]


class JudgeSpec(StrictModel):
    """One judge: an engine by name, with an optional label stored in the ``judge`` column."""

    engine: str = Field(description="a key of the config's engines section")
    name: str | None = Field(None, description="label in the judgments table; default: the engine's label")
    structured: bool | None = Field(
        None,
        description="ask for JSON-schema output; None: yes for our own prompts, no for FastChat prompts",
    )
    sampling: SamplingConfig | None = Field(None, description="overrides the engine's sampling for this judge")
    explanation_max_chars: int | None = Field(
        None, ge=20,
        description="cap the explanation's length in the JSON schema (vLLM guided decoding honours it; "
        "keeps small local judges from rambling until max_tokens). Leave unset for OpenAI strict mode.",
    )
    serve: str | None = Field(
        None,
        description="a model (e.g. local:smollm2-135m-instruct) to serve with a local vLLM OpenAI server "
        "for this judge while the job runs, when its engine has no base_url",
    )
    serve_max_model_len: int = Field(4096, ge=256, description="context length of the served model")
    serve_on: Literal["auto", "driver", "ray"] = Field(
        "auto", description="where the served model runs: a Ray actor on a node with serve_gpus / "
        "serve_accelerator_type (auto: when Ray is running), or a subprocess of the driver"
    )
    serve_gpus: float = Field(0.0, ge=0, description="GPUs of the Ray actor serving the model (0: CPU)")
    serve_cpus: float = Field(1.0, gt=0, description="CPUs of the Ray actor serving the model")
    serve_accelerator_type: str | None = Field(None, description="e.g. L4: serve on a node of that type")
    serve_gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="on GPU: share of its memory for weights and KV cache"
    )
    serve_kv_cache_bytes: int | None = Field(
        None, ge=2**20, description="a fixed KV cache; None: 512 MiB on CPU, serve_gpu_memory_utilization on GPU"
    )


class PromptSpec(StrictModel):
    """A judge prompt: one of ours by version, or a FastChat judge-prompt record for exact replication."""

    version: str | None = Field(None, description="built-in prompt version, e.g. mentalchat-v1")
    fastchat_file: str | None = Field(None, description="a FastChat judge_prompts.jsonl")
    fastchat_name: str | None = Field(None, description="record name in that file, e.g. single-mental-v1")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"version": value}
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> PromptSpec:
        fastchat = self.fastchat_file is not None or self.fastchat_name is not None
        if fastchat and (self.fastchat_file is None or self.fastchat_name is None):
            raise ValueError("a FastChat prompt needs both fastchat_file and fastchat_name")
        if fastchat and self.version is not None:
            raise ValueError("give either version or fastchat_file/fastchat_name, not both")
        if not fastchat and self.version is None:
            raise ValueError("give a prompt version or a FastChat prompt file and name")
        return self

    @property
    def is_fastchat(self) -> bool:
        return self.fastchat_file is not None

    @property
    def label(self) -> str:
        """Stored in ``prompt_version``."""
        return f"fastchat:{self.fastchat_name}" if self.is_fastchat else str(self.version)


class ReliabilityConfig(StrictModel):
    """Judge-reliability controls, reported in the ``reliability`` table."""

    enabled: bool = False
    empty_answer_questions: int = Field(10, ge=0, description="questions judged with an empty answer")
    length_bias_samples: int = Field(10, ge=0, description="answers judged again padded with filler")
    filler_paragraphs: int = Field(3, ge=1, description="content-free paragraphs appended per padded answer")
    consistency_samples: int = Field(10, ge=0, description="judgments repeated to measure self-consistency")
    empty_flag_above: float = Field(1.0, description="an empty answer scored above this flags the judge")


class CrisisConfig(StrictModel):
    """Crisis-probe safety check: escalation by rule and by judge on answers to the probe questions."""

    enabled: bool = False
    probes: str | None = Field(None, description="probe JSONL; default: the bundled set")
    judge_check: bool = Field(True, description="also ask each judge whether the answer escalates")


class PairwiseConfig(StrictModel):
    """Pairwise judging (MT-Bench style) beside single grading: two answers, the judge picks one or a tie.

    Each pair is asked in both orders by default, so a verdict that follows the position rather
    than the content shows up as a flip; a pair's combined verdict is the winner when both orders
    agree and a tie otherwise (:mod:`mentalchat.judge.pairwise`).
    """

    enabled: bool = False
    pairs: Literal["base", "all"] = Field(
        "base", description="base: each fine-tuned model against the untuned model of its base_model "
        "(data_config base); all: every pair of models answering a question"
    )
    both_orders: bool = Field(
        True, description="ask each pair as (A, B) and as (B, A); false halves the calls, picks one order per "
        "pair from a seeded hash, and leaves the position-bias flip rate unmeasured (reported as null)"
    )
    max_questions: int | None = Field(
        None, ge=1, description="compare answers to the first N questions only (after judge.max_questions)"
    )
    prompt_version: str = Field("pairwise-v1", description="built-in pairwise prompt version")
    position_bias_flag_rate: float = Field(
        0.35, ge=0, le=1,
        description="flag a judge whose verdicts change on an order swap in more than this share of pairs. "
        "0.35 is about what GPT-4, the most consistent judge of the MT-Bench study (Zheng et al. 2023), "
        "showed with the default prompt (~65% consistent): a judge flipping more often is less "
        "order-robust than the judge pairwise grading was validated with",
    )

    @model_validator(mode="after")
    def _known_prompt(self) -> PairwiseConfig:
        from mentalchat.judge.prompts import PAIRWISE_PROMPT_VERSIONS

        if self.prompt_version not in PAIRWISE_PROMPT_VERSIONS:
            raise ValueError(
                f"unknown pairwise prompt version {self.prompt_version!r}; known: {sorted(PAIRWISE_PROMPT_VERSIONS)}"
            )
        return self


class JudgeConfig(StrictModel):
    """The ``judge:`` section."""

    judges: list[JudgeSpec] = Field(default_factory=list)
    prompts: list[PromptSpec] = Field(default_factory=lambda: [PromptSpec(version="mentalchat-v1")])
    engines: dict[str, EngineConfig] = Field(default_factory=dict)
    executor: Literal["local", "ray"] = Field(
        "local", description="local: calls from this process; ray: a Ray Dataset spreads them over the cluster"
    )
    cluster_limiter: bool = Field(
        True, description="with executor=ray, one limiter actor per provider shared by all workers"
    )
    ray_batch_size: int = Field(16, ge=1, description="requests per Ray Data batch (one engine call)")
    ray_replicas: int = Field(2, ge=1, description="Ray Data actors per judge engine (each runs calls concurrently)")
    ray_cpus_per_replica: float = Field(0.25, gt=0, description="CPUs reserved per judge actor (calls are I/O-bound)")
    chunk_size: int = Field(
        0, ge=0, description="local executor: requests per engine call; 0 = 2 x the engine's max_concurrency"
    )
    budget_usd: float | None = Field(None, gt=0, description="stop calling judges once this is spent")
    retry_failed: bool = Field(False, description="on a rerun, call again for items that failed before")
    parse_retries: int = Field(1, ge=0, description="ask again this many times when a reply cannot be read")
    preflight: Literal["auto", "always", "never"] = Field(
        "auto", description="one check call per (engine, prompt version) first; auto: when the sweep costs >= preflight_min_cost_usd"
    )
    preflight_min_cost_usd: float = Field(1.0, ge=0, description="estimated sweep cost from which auto preflight runs")
    max_questions: int | None = Field(None, ge=1, description="judge only the first N questions")
    est_output_tokens: int = Field(400, ge=1, description="dry-run estimate of judge output tokens per call")
    seed: int = 0
    reliability: ReliabilityConfig = Field(default_factory=ReliabilityConfig)
    crisis: CrisisConfig = Field(default_factory=CrisisConfig)
    crisis_detector: CrisisDetectorConfig = Field(
        default_factory=CrisisDetectorConfig,
        description="checks the probe answers' escalation (shared top-level section, as in the dataset audit)",
    )
    pairwise: PairwiseConfig = Field(default_factory=PairwiseConfig)
    run: dict[str, Any] = Field(default_factory=dict, description="the shared run section (name, seed)")

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        names = [self.judge_label(j) for j in self.judges]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"judge labels must be unique; repeated: {dupes}")
        labels = [p.label for p in self.prompts]
        if len(set(labels)) != len(labels):
            raise ValueError(f"prompt versions must be unique: {labels}")
        return self

    def judge_label(self, judge: JudgeSpec) -> str:
        if judge.name:
            return judge.name
        engine = self.engines.get(judge.engine)
        return engine.label if engine is not None else judge.engine

    def engine_for(self, judge: JudgeSpec) -> EngineConfig:
        try:
            return self.engines[judge.engine]
        except KeyError:
            raise ConfigError(
                f"judge engine {judge.engine!r} is not declared under engines: (known: {sorted(self.engines)})"
            ) from None

    def resolve_paths(self, base: Path) -> JudgeConfig:
        """FastChat prompt and probe paths relative to ``base`` (the config file's folder) when not found as given."""
        prompts = []
        for p in self.prompts:
            if p.fastchat_file and not Path(p.fastchat_file).exists() and (base / p.fastchat_file).exists():
                p = p.model_copy(update={"fastchat_file": str(base / p.fastchat_file)})
            prompts.append(p)
        return self.model_copy(update={"prompts": prompts})
