"""Executing a judge sweep: the engines as this run uses them, in this process or across Ray.

Retries, adaptive concurrency, Retry-After and timeouts live in the HTTP engine; this module
decides where the calls run. Locally, chunks of requests go to one engine per judge from a few
threads (the engine's limiter keeps the provider's limits). With ``executor: ray`` they become a
Ray Dataset over the cluster, every worker's engine sharing one limiter actor per provider, in
waves whose worst-case cost is reserved on the run's budget first. Finished results go to a sink
as they arrive, so the progress store keeps what a crash would otherwise lose. Judges with
``serve`` get a local vLLM OpenAI server for the length of the run. Engines with ``batch`` set
send all their requests through the provider's batch API instead (:mod:`mentalchat.engine.batch`),
with the batch ids journaled in the run folder (``_batches/<engine>.json``) so a restarted run
collects its batches rather than paying for them again.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mentalchat.engine.base import create_engine
from mentalchat.engine.budget import BudgetGuard
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatRequest, ChatResult
from mentalchat.judge.config import JudgeConfig, JudgeSpec
from mentalchat.judge.plan import RequestPlan

__all__ = ["BATCH_DIR", "CACHE_DIR", "ResultSink", "engine_config_for_run", "execute", "serve_local_judges"]

CACHE_DIR = "_cache"
BATCH_DIR = "_batches"

ResultSink = Callable[[list[ChatResult]], None]


def engine_config_for_run(cfg: JudgeConfig, judge: JudgeSpec, engine_cfg: EngineConfig, output: Path) -> EngineConfig:
    """The judge's engine as this run uses it: a response cache always, Ray settings for the sweep.

    The default cache is per engine name: two endpoints serving a model under the same name
    (a real API and a local stand-in) must not answer for each other.
    """
    update: dict[str, Any] = {}
    if engine_cfg.cache_dir is None:
        update["cache_dir"] = str(output / CACHE_DIR / _safe_name(judge.engine))
    if judge.serve and not engine_cfg.base_url:  # served here: local, free unless priced explicitly
        update["price_in_per_mtok"] = engine_cfg.price_in_per_mtok or 0.0
        update["price_out_per_mtok"] = engine_cfg.price_out_per_mtok or 0.0
    if cfg.executor == "ray":
        update["vllm"] = engine_cfg.vllm.model_copy(
            update={"replicas": cfg.ray_replicas, "batch_size": cfg.ray_batch_size,
                    "cpus_per_replica": cfg.ray_cpus_per_replica}
        ) if engine_cfg.is_http else engine_cfg.vllm
        if engine_cfg.is_http and cfg.cluster_limiter:
            update["http"] = engine_cfg.http.model_copy(update={"cluster_limiter": True})
    return engine_cfg.model_copy(update=update) if update else engine_cfg


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _execute_local(
    engine_cfg: EngineConfig,
    requests: list[ChatRequest],
    budget: BudgetGuard | None,
    sink: ResultSink,
    chunk_size: int,
    stop: threading.Event,
) -> None:
    """Run requests through one engine in this process.

    Chunks of about the engine's concurrency go to the engine from a few threads at once: the
    engine's limiter (shared by all its calls) keeps the provider's limits, the extra chunks keep
    it busy at chunk boundaries, and each finished chunk is persisted at once.
    """
    conc = engine_cfg.http.max_concurrency if engine_cfg.is_http else 64
    size = chunk_size or max(1, conc)
    chunks = list(_chunks(requests, size))
    it = iter(chunks)
    lock = threading.Lock()
    workers = min(4, len(chunks)) if engine_cfg.is_http else 1

    # HTTP engines share the run's dollar guard (checked per call, before it is made).
    options = {"budget": budget} if budget is not None and engine_cfg.is_http else {}
    with create_engine(engine_cfg, **options) as engine:

        def worker() -> None:
            while not stop.is_set():
                with lock:
                    chunk = next(it, None)
                if chunk is None:
                    return
                sink(engine.chat_batch(list(chunk)))

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="judge") as pool:
            futures = [pool.submit(worker) for _ in range(max(1, workers))]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                stop.set()
                raise


def _execute_ray(
    engine_cfg: EngineConfig,
    requests: list[ChatRequest],
    worst_case: dict[str, float],
    budget: BudgetGuard | None,
    sink: ResultSink,
    batch_size: int,
    stop: threading.Event,
) -> list[ChatRequest]:
    """Run requests as a Ray Dataset over the cluster's CPUs; returns those not called (budget).

    Engines in Ray workers share one limiter actor per provider (``http.cluster_limiter``). With a
    budget the requests go in waves whose worst-case cost is reserved first, so the cap holds.
    """
    import ray

    from mentalchat.engine import run_on_dataset

    wave = len(requests) if budget is None else max(batch_size * 4, 1)
    for start in range(0, len(requests), wave):
        part = requests[start : start + wave]
        if stop.is_set():
            return requests[start:]
        reserve = sum(worst_case[r.id] for r in part)
        if budget is not None and not budget.try_reserve_now(reserve):
            return requests[start:]
        ds = ray.data.from_items([{"request": r.model_dump_json()} for r in part])
        out = run_on_dataset(ds, engine_cfg, request_column="request", result_column="result")
        actual = 0.0
        try:
            for batch in out.iter_batches(batch_size=batch_size, batch_format="numpy"):
                results = [ChatResult.model_validate_json(s) for s in batch["result"]]
                actual += sum(r.cost_usd for r in results)
                sink(results)
        finally:
            if budget is not None:
                budget.settle_now(reserve, actual)
    return []


def _execute_batch(
    engine_cfg: EngineConfig,
    requests: list[ChatRequest],
    budget: BudgetGuard | None,
    sink: ResultSink,
    stop: threading.Event,
    journal: Path | None,
    on_batch: Callable[[Any], None] | None,
) -> list[ChatRequest]:
    """All of an engine's requests through its batch API; each collected batch goes to the sink."""
    from mentalchat.engine.batch import run_batch

    run_batch(requests, engine_cfg, journal=journal, budget=budget, sink=sink, stop=stop, on_progress=on_batch)
    return []  # budget refusals came back through the sink as results


def execute(
    cfg: JudgeConfig,
    engines: dict[str, EngineConfig],
    work: RequestPlan,
    budget: BudgetGuard | None,
    sink: ResultSink,
    stop: threading.Event,
    *,
    batch_dir: Path | None = None,
    on_batch: Callable[[Any], None] | None = None,
) -> list[ChatRequest]:
    """Run every engine's requests at once (one thread per engine); returns the requests not made (budget).

    ``batch_dir`` holds the batch journals of engines with ``batch`` set (None: kept in memory);
    ``on_batch`` hears their progress (:class:`mentalchat.engine.batch.BatchProgress`).
    """
    skipped: list[ChatRequest] = []
    if cfg.executor == "ray":
        engines = fit_ray_engines(cfg, engines, [n for n in work.requests if not (engines[n].batch is not None
                                                                              and engines[n].is_http)])
    with ThreadPoolExecutor(max_workers=max(1, len(work.requests)), thread_name_prefix="judge-engine") as pool:
        futures = []
        for engine_name, reqs in work.requests.items():
            ecfg = engines[engine_name]
            if ecfg.batch is not None and ecfg.is_http:
                journal = batch_dir / f"{_safe_name(engine_name)}.json" if batch_dir is not None else None
                futures.append(pool.submit(_execute_batch, ecfg, reqs, budget, sink, stop, journal, on_batch))
            elif cfg.executor == "ray":
                futures.append(pool.submit(
                    _execute_ray, ecfg, reqs, work.worst_case, budget, sink, cfg.ray_batch_size, stop
                ))
            else:
                futures.append(pool.submit(_execute_local, ecfg, reqs, budget, sink, cfg.chunk_size, stop))
        try:
            for fut in futures:
                skipped.extend(fut.result() or [])
        except BaseException:
            stop.set()
            raise
    return skipped


def fit_ray_engines(
    cfg: JudgeConfig, engines: dict[str, EngineConfig], names: Sequence[str], *, cluster: Any = None,
) -> dict[str, EngineConfig]:
    """The judges' Ray pools, which run at the same time, checked against the cluster and sized to fit.

    HTTP judges' pools are set by ``judge.ray_replicas`` / ``judge.ray_cpus_per_replica``; a local
    (vLLM) judge's by its engine's ``vllm`` section. Raises a ``ResourceFitError`` naming the key to change.
    """
    from mentalchat.core.resources import ensure_fits
    from mentalchat.engine.pools import engine_pool_ask, resize_engine

    if not names:
        return engines
    http_keys = {"count": "judge.ray_replicas", "CPU": "judge.ray_cpus_per_replica"}
    asks = [engine_pool_ask(engines[n], key=f"engines.{n}", label=f"judge engine {n!r}",
                            keys=http_keys if engines[n].is_http else None) for n in names]
    fit = ensure_fits(asks, stage="judge", cluster=cluster)
    out = dict(engines)
    for n, ask in zip(names, fit.asks, strict=True):
        out[n], _ = resize_engine(engines[n], ask)  # HTTP actors need no threads kept
    return out


def serve_local_judges(
    cfg: JudgeConfig, engines: dict[str, EngineConfig], stack: contextlib.ExitStack, echo: Callable[[str], None]
) -> None:
    """Start a vLLM OpenAI server for each judge with ``serve`` whose engine has no endpoint.

    With Ray running (or ``serve_on: ray``) the server is a Ray actor placed on a node with the
    judge's ``serve_gpus`` / ``serve_accelerator_type``, checked against the cluster first, so
    on a real cluster it does not land on the GPU-less head node; otherwise a driver subprocess.
    """
    for i, judge in enumerate(cfg.judges):
        ecfg = engines[judge.engine]
        if not judge.serve or ecfg.base_url or ecfg.backend != "openai":
            continue
        from mentalchat.engine.vllm_server import RayServedModel, VLLMServer

        on_ray = judge.serve_on == "ray" or (judge.serve_on == "auto" and _ray_running())
        on_gpu = judge.serve_gpus > 0
        opts: dict[str, Any] = {
            "served_model_name": ecfg.model, "max_model_len": judge.serve_max_model_len,
            "kv_cache_memory_bytes": judge.serve_kv_cache_bytes or (None if on_gpu else 512 * 2**20),
            "gpu_memory_utilization": judge.serve_gpu_memory_utilization,
        }
        label = cfg.judge_label(judge)
        if on_ray:
            _check_server_fits(judge, i, label)
            where = f"a Ray actor ({judge.serve_cpus:g} CPU, {judge.serve_gpus:g} GPU"
            where += f", {judge.serve_accelerator_type})" if judge.serve_accelerator_type else ")"
            echo(f"starting a vLLM server for judge {label} ({judge.serve}) in {where}")
            srv: Any = stack.enter_context(RayServedModel(
                judge.serve, num_cpus=judge.serve_cpus, num_gpus=judge.serve_gpus,
                accelerator_type=judge.serve_accelerator_type, **opts))
            echo(f"  judge {label} served at {srv.base_url} (node {str(srv.node_id)[:12]})")
        else:
            echo(f"starting a local vLLM server for judge {label} ({judge.serve})")
            srv = stack.enter_context(VLLMServer(judge.serve, **opts))
        engines[judge.engine] = ecfg.model_copy(update={"base_url": srv.base_url, "served": True})


def _ray_running() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def _check_server_fits(judge: JudgeSpec, index: int, label: str) -> None:
    """Refuse (naming the key) a served judge no node can host, instead of an actor that waits forever."""
    from mentalchat.core.resources import ACCELERATOR_PREFIX, Ask, ensure_fits

    resources: dict[str, float] = {"CPU": judge.serve_cpus}
    if judge.serve_gpus:
        resources["GPU"] = judge.serve_gpus
    if judge.serve_accelerator_type:
        resources[ACCELERATOR_PREFIX + judge.serve_accelerator_type] = 0.001
    key = f"judge.judges[{index}]"
    ensure_fits([Ask(f"vLLM server of judge {label!r}", resources, keys={
        "CPU": f"{key}.serve_cpus", "GPU": f"{key}.serve_gpus",
        "accelerator_type": f"{key}.serve_accelerator_type"})], stage="judge")


