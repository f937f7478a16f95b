"""The two entry points every stage uses to run LLM calls: a list, or a Ray Data column.

:func:`run_requests` takes a list and returns one result per request, in order. vLLM goes through
Ray Data when Ray is running (replicas spread over the cluster), otherwise runs in this process;
HTTP backends run in-process (their ``chat_batch`` is concurrent inside) unless asked to spread.
:func:`run_on_dataset` adds a result column to a Ray Dataset of serialised requests with a pool of
:class:`EngineActor` replicas, each holding one engine built once.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mentalchat.engine.base import Engine, create_engine
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatRequest, ChatResult, SamplingConfig

__all__ = ["EngineActor", "remove_placement_groups", "run_on_dataset", "run_requests", "run_rounds",
           "tensor_parallel_bundles"]

_INDEX = "__mentalchat_index"


def _ray_running() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def _check_aligned(requests: list[ChatRequest], results: list[ChatResult], backend: str) -> None:
    if len(results) != len(requests):
        raise RuntimeError(f"backend {backend!r} returned {len(results)} results for {len(requests)} requests")


def _chunk_size(cfg: EngineConfig) -> int:
    if cfg.backend == "vllm":
        return cfg.vllm.batch_size
    if cfg.backend == "transformers":
        return cfg.transformers.batch_size
    return max(1, cfg.http.max_concurrency * 4)


OnResult = Callable[[ChatResult], None]


def _run_in_process(requests: list[ChatRequest], cfg: EngineConfig, progress: bool,
                    on_result: OnResult | None = None, engine: Engine | None = None) -> list[ChatResult]:
    """``engine``: one the caller built and closes (several rounds on one engine); else built and closed here."""
    owned = engine is None
    engine = engine or create_engine(cfg)
    try:
        if not progress and on_result is None:
            results = engine.chat_batch(requests)
            _check_aligned(requests, results, cfg.backend)
            return results
        import contextlib

        results = []
        size = _chunk_size(cfg)
        bar: Any = None
        with contextlib.ExitStack() as stack:
            if progress:
                from tqdm.auto import tqdm

                bar = stack.enter_context(tqdm(total=len(requests), desc=cfg.label, unit="req"))
            for start in range(0, len(requests), size):
                chunk = requests[start : start + size]
                out = engine.chat_batch(chunk)
                _check_aligned(chunk, out, cfg.backend)
                results.extend(out)
                if on_result is not None:
                    for res in out:
                        on_result(res)
                if bar is not None:
                    bar.update(len(chunk))
        return results
    finally:
        if owned:
            engine.close()


def run_requests(
    requests: list[ChatRequest],
    cfg: EngineConfig,
    *,
    use_ray: bool | None = None,
    progress: bool = False,
    config_key: str | None = None,
    stage: str = "engine",
    keys: dict[str, str] | None = None,
    on_result: OnResult | None = None,
) -> list[ChatResult]:
    """Answer ``requests`` with the engine ``cfg`` describes; one result per request, in order.

    ``use_ray=None`` picks: vLLM through Ray Data when Ray is initialised, everything else
    in-process. ``use_ray=True`` forces Ray Data for any backend (e.g. judge calls spread over a
    cluster); ``False`` forces in-process. On Ray the pool is first checked against the cluster
    (sized down or refused, :mod:`mentalchat.core.resources`) and watched while it runs
    (:mod:`mentalchat.core.watchdog`); ``config_key`` (``engines.<name>``), ``keys`` and ``stage``
    name the settings in their messages. ``on_result`` sees each result as it arrives (a batch at a
    time, in no set order), so a caller can journal progress and resume after a crash.
    """
    if not requests:
        return []
    if use_ray is None:
        use_ray = cfg.backend == "vllm" and _ray_running()
    if not use_ray:
        return _run_in_process(requests, cfg, progress, on_result)

    import ray.data

    from mentalchat.core.resources import ensure_fits
    from mentalchat.core.watchdog import StallWatchdog
    from mentalchat.engine.pools import engine_pool_ask, resize_engine

    key = config_key or f"engines.<{cfg.label}>"
    fit = ensure_fits([engine_pool_ask(cfg, key=key, keys=keys)], stage=stage)
    cfg, threads = resize_engine(cfg, fit.asks[0])
    ds = ray.data.from_items([{_INDEX: i, "request": r.model_dump_json()} for i, r in enumerate(requests)])
    groups: list[Any] = []
    out = run_on_dataset(ds, cfg, threads=threads, placement_groups=groups)
    try:
        with StallWatchdog(stage, hint=f"Check {key}.vllm (replicas, cpus_per_replica, gpus_per_replica, "
                           "accelerator_type, tensor_parallel_size).") as dog:
            rows = []
            for row in dog.watch(out.iter_rows()):
                rows.append(row)
                if on_result is not None:
                    on_result(ChatResult.model_validate_json(row["result"]))
    finally:
        remove_placement_groups(groups)
    rows.sort(key=lambda row: row[_INDEX])
    results = [ChatResult.model_validate_json(row["result"]) for row in rows]
    _check_aligned(requests, results, cfg.backend)
    return results


def run_rounds(
    requests: list[ChatRequest],
    cfg: EngineConfig,
    next_round: Callable[[list[ChatResult]], list[ChatRequest]],
    *,
    use_ray: bool | None = None,
    **kw: Any,
) -> list[ChatResult]:
    """Rounds of requests, each built from the previous round's results (``next_round``; [] ends).

    Why: turn k+1 of a conversation needs the model's answer to turn k, so a multi-turn benchmark is
    answered a round per turn. In-process the engine is built once for every round (a vLLM engine
    takes long to start); on Ray each round is one :func:`run_requests` pool run. ``kw`` as for
    :func:`run_requests`. Returns every round's results, in round order.
    """
    if use_ray is None:
        use_ray = cfg.backend == "vllm" and _ray_running()
    out: list[ChatResult] = []
    if use_ray:
        while requests:
            results = run_requests(requests, cfg, use_ray=True, **kw)
            out += results
            requests = next_round(results)
        return out
    engine: Engine | None = None
    try:
        while requests:
            engine = engine or create_engine(cfg)
            results = _run_in_process(requests, cfg, kw.get("progress", False), kw.get("on_result"), engine)
            out += results
            requests = next_round(results)
    finally:
        if engine is not None:
            engine.close()
    return out


def remove_placement_groups(groups: list[Any]) -> None:
    """Give back the tensor-parallel replicas' placement groups (their actors are gone by then)."""
    from ray.util.placement_group import remove_placement_group

    while groups:
        try:
            remove_placement_group(groups.pop())
        except Exception:  # noqa: BLE001 - already removed, or the cluster is going away
            pass


class EngineActor:
    """A Ray Data ``map_batches`` callable class: builds the engine once, answers batch after batch."""

    def __init__(self, cfg_json: str, request_column: str = "request", result_column: str = "result") -> None:
        self.cfg = EngineConfig.model_validate_json(cfg_json)
        self.request_column = request_column
        self.result_column = result_column
        self.engine: Engine = create_engine(self.cfg)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        raw = batch[self.request_column]
        results: list[ChatResult | None] = [None] * len(raw)
        good: list[tuple[int, ChatRequest]] = []
        for i, item in enumerate(raw):
            try:
                good.append((i, ChatRequest.model_validate_json(item)))
            except Exception as exc:  # noqa: BLE001 - a malformed row fails alone
                results[i] = ChatResult(
                    id=f"<row {i} of batch>", provider=self.cfg.backend, model=self.cfg.label,
                    finish_reason="error", error=f"invalid request in column {self.request_column!r}: {exc}",
                    error_kind="invalid_request",
                )
        if good:
            answered = self.engine.chat_batch([req for _, req in good])
            _check_aligned([req for _, req in good], answered, self.cfg.backend)
            for (i, _), result in zip(good, answered, strict=True):
                results[i] = result
        batch[self.result_column] = np.array([r.model_dump_json() for r in results if r is not None], dtype=object)
        return batch

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()


_LIGHT_CPU = 0.1
_KEPT = "__mentalchat_col_"
_ERROR = "__mentalchat_error"  # input columns travel through the processor under this prefix


def _processor_preprocess(
    row: dict[str, Any], *, request_column: str, default_sampling: str, model_path: str, max_lora_rank: int,
    per_request_seed: bool = True,
) -> dict[str, Any]:
    """Row → what ray.data.llm's vLLM stages read (messages, sampling_params, model for LoRA).

    The processor carries the row's columns along and reads a ``model`` column as the LoRA
    adapter to use, so the row's own columns are also copied under a prefix (restored at the end)
    and ``model`` is always set: the base model's path, or the request's adapter. A request that
    cannot run becomes a one-token dummy with ``_ERROR`` set, reported as an error result.
    On CPU (``per_request_seed=False``) seeds stay at the engine, as in the "vllm" backend.
    """
    out: dict[str, Any] = {_KEPT + k: v for k, v in row.items()}
    dummy = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 1, "seed": None, "stop": None}
    out.update(messages=[{"role": "user", "content": "."}], sampling_params=dummy, model=model_path,
               **{_ERROR: ""})
    try:
        request = ChatRequest.model_validate_json(row[request_column])
        if request.lora:
            from mentalchat.engine.vllm_backend import _check_adapter

            _check_adapter(request.lora, max_lora_rank)
    except Exception as exc:  # noqa: BLE001 - one bad row must not stop the dataset
        out[_ERROR] = f"{type(exc).__name__}: {exc}"
        return out
    sampling = request.sampling or SamplingConfig.model_validate_json(default_sampling)
    params: dict[str, Any] = {"temperature": sampling.temperature, "top_p": sampling.top_p,
                              "max_tokens": sampling.max_tokens, "seed": sampling.seed if per_request_seed else None,
                              "stop": sampling.stop}
    if request.json_schema is not None:
        # a JSON string: as a nested dict, Arrow would merge the schemas of all rows into one struct
        params["structured_outputs"] = {"json": json.dumps(request.json_schema)}
    out["messages"] = [m.model_dump() for m in request.messages]
    out["sampling_params"] = params
    if request.lora:
        out["model"] = str(Path(request.lora).resolve())
    return out


def _processor_result(row: dict[str, Any], *, cfg_json: str, request_column: str, result_column: str) -> dict[str, Any]:
    """Processor output row → the input row's columns plus a JSON ``ChatResult``."""
    cfg = EngineConfig.model_validate_json(cfg_json)
    out = {k[len(_KEPT):]: v for k, v in row.items() if k.startswith(_KEPT)}
    request: ChatRequest | None = None
    try:
        request = ChatRequest.model_validate_json(out[request_column])
        error = row.get(_ERROR) or row.get("__inference_error__") or None
    except Exception as exc:  # noqa: BLE001
        error = f"invalid request in column {request_column!r}: {exc}"
    max_tokens = (request.sampling or cfg.sampling).max_tokens if request else 0
    n_out = int(row.get("num_generated_tokens") or 0)
    result = ChatResult(
        id=request.id if request else "<invalid row>",
        text=None if error else str(row.get("generated_text") or ""),
        # the processor does not pass vLLM's finish reason on; a spent budget means "length"
        finish_reason="error" if error else ("length" if n_out >= max_tokens else "stop"),
        provider="vllm",
        model=cfg.label,
        tokens_in=int(row.get("num_input_tokens") or 0),
        tokens_out=n_out,
        latency_s=max(0.0, float(row.get("time_taken_llm") or 0.0)),
        attempts=1,
        error=error,
        metadata=dict(request.metadata) if request else {},
    )
    out[result_column] = result.model_dump_json()
    return out


def _run_with_processor(ds: Any, cfg: EngineConfig, *, request_column: str, result_column: str) -> Any:
    """``vllm.impl: processor``: ray.data.llm's vLLM processor instead of our actor.

    It runs vLLM's async engine in a separate process with its own chat-template, tokenize and
    detokenize stages: more moving parts, worth it on GPU clusters. On CPU it needs a CPU-only
    placement group and no engine metrics (those import ``ray.serve``).
    """
    import functools

    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from mentalchat.engine.vllm_backend import vllm_engine_kwargs
    from mentalchat.models.kit import resolve_model

    opts = cfg.vllm
    on_cpu = not opts.gpus_per_replica
    engine_kwargs = vllm_engine_kwargs(cfg, resolve_model(cfg.model), on_cpu=on_cpu)
    model_path = engine_kwargs.pop("model")
    passed_env = ("HF_HUB_OFFLINE", "VLLM_NO_USAGE_STATS", "VLLM_CPU_KVCACHE_SPACE", "VLLM_CACHE_ROOT")
    config_kwargs: dict[str, Any] = {
        "model_source": model_path,
        "engine_kwargs": engine_kwargs,
        "concurrency": opts.replicas,
        "batch_size": opts.batch_size,
        "should_continue_on_error": True,
        "runtime_env": {"env_vars": {k: os.environ[k] for k in passed_env if k in os.environ}},
    }
    if opts.accelerator_type:
        config_kwargs["accelerator_type"] = opts.accelerator_type
    if on_cpu:
        config_kwargs["placement_group_config"] = {"bundles": [{"CPU": opts.cpus_per_replica}]}
        config_kwargs["log_engine_metrics"] = False
    # Light stages get a sliver of CPU: with a whole CPU each, the chat-template, tokenize and
    # detokenize actors plus the engine's bundle can take every CPU of a small machine and leave
    # the preprocessing task waiting forever. vLLM tokenizes and detokenizes itself.
    config_kwargs["chat_template_stage"] = {"enabled": True, "num_cpus": _LIGHT_CPU}
    config_kwargs["tokenize_stage"] = False
    config_kwargs["detokenize_stage"] = False
    processor = build_processor(
        vLLMEngineProcessorConfig(**config_kwargs),
        preprocess=functools.partial(
            _processor_preprocess, request_column=request_column,
            default_sampling=cfg.sampling.model_dump_json(), model_path=model_path,
            max_lora_rank=opts.max_lora_rank, per_request_seed=not on_cpu,
        ),
        preprocess_map_kwargs={"num_cpus": _LIGHT_CPU},
    )
    finish = functools.partial(
        _processor_result, cfg_json=cfg.model_dump_json(), request_column=request_column,
        result_column=result_column,
    )
    return processor(ds).map(finish, num_cpus=_LIGHT_CPU)


def tensor_parallel_bundles(cfg: EngineConfig) -> list[dict[str, float]]:
    """One replica's placement-group bundles: a GPU per rank; the first also holds the replica's CPUs."""
    from mentalchat.core.resources import ACCELERATOR_PREFIX

    opts = cfg.vllm
    extra = {ACCELERATOR_PREFIX + opts.accelerator_type: 0.001} if opts.accelerator_type else {}
    first = {"CPU": opts.cpus_per_replica, "GPU": 1.0, **extra}
    return [first] + [{"GPU": 1.0, **extra} for _ in range(opts.tensor_parallel_size - 1)]


def _tensor_parallel_placement(bundles: list[dict[str, float]], created: list[Any]) -> dict[str, Any]:
    """Ray Data calls this (in the driver) before starting each replica: a fresh STRICT_PACK group.

    ``placement_group_capture_child_tasks`` puts the ranks vLLM starts into the same group. Each
    group is added to ``created``, for the caller to remove once the dataset is consumed: a group
    outlives its actor and would hold its GPUs until the job ends.
    """
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group(bundles, strategy="STRICT_PACK")
    created.append(pg)
    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
        pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)}


def run_on_dataset(
    ds: Any,
    cfg: EngineConfig,
    *,
    request_column: str = "request",
    result_column: str = "result",
    actor_cls: type[EngineActor] | None = None,
    threads: int | None = None,
    placement_groups: list[Any] | None = None,
) -> Any:
    """Add ``result_column`` (a JSON ``ChatResult``) to every row of ``ds`` (JSON ``ChatRequest``).

    Other columns are kept. Replicas, batch size and per-replica resources come from
    ``cfg.vllm`` whatever the backend, so HTTP judges can be spread across a cluster the same way.
    ``actor_cls`` swaps in a subclass of :class:`EngineActor` (e.g. to time batches). ``threads``
    sets the replicas' ``OMP_NUM_THREADS`` (when the resource check lowered their CPU share:
    :func:`mentalchat.engine.pools.resize_engine`). Tensor-parallel vLLM replicas each get a
    placement group (:func:`tensor_parallel_bundles`), appended to ``placement_groups`` so the
    caller can remove them when done (:func:`remove_placement_groups`).
    """
    import ray.data

    opts = cfg.vllm
    if cfg.backend == "vllm" and opts.impl == "processor":
        return _run_with_processor(ds, cfg, request_column=request_column, result_column=result_column)
    kwargs: dict[str, Any] = {}
    if cfg.backend == "vllm" and opts.tensor_parallel_size > 1:
        # Each replica gets its own placement group, its ranks' GPUs on one node; the replica
        # holds no GPU itself and vLLM's Ray executor starts one worker per bundle inside the group.
        kwargs["ray_remote_args_fn"] = functools.partial(
            _tensor_parallel_placement, tensor_parallel_bundles(cfg),
            placement_groups if placement_groups is not None else [])
    elif not cfg.is_http:  # local models: GPUs per replica
        if opts.gpus_per_replica:
            kwargs["num_gpus"] = opts.gpus_per_replica
        if opts.accelerator_type:
            kwargs["accelerator_type"] = opts.accelerator_type
    if threads and "OMP_NUM_THREADS" not in os.environ:  # a thread count set by the user wins
        kwargs["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(threads)}}
    return ds.map_batches(
        actor_cls or EngineActor,
        fn_constructor_kwargs={
            "cfg_json": cfg.model_dump_json(),
            "request_column": request_column,
            "result_column": result_column,
        },
        compute=ray.data.ActorPoolStrategy(size=opts.replicas),
        batch_size=opts.batch_size,
        batch_format="numpy",
        num_cpus=opts.cpus_per_replica,
        **kwargs,
    )
