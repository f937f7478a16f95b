"""What an engine's Ray Data actor pool asks the cluster for, and the pool resized to what fits.

Why: :func:`mentalchat.engine.run_on_dataset` turns ``cfg.vllm`` (replicas, CPUs and GPUs per
replica, accelerator type) into Ray actor options; the up-front resource check
(:mod:`mentalchat.core.resources`) needs the same numbers, with the config keys that set them, to
say what to change. Kept here, next to the runner, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from mentalchat.core.resources import ACCELERATOR_PREFIX, Ask
from mentalchat.engine.config import EngineConfig

__all__ = ["LIGHT_CPU", "engine_pool_ask", "resize_engine"]

#: The CPU share of a light actor (HTTP calls, de-identification) when a small cluster needs it.
LIGHT_CPU = 0.1
#: Lowest CPU reservation of a local engine replica (it keeps its configured threads; see resize_engine).
_MIN_ENGINE_CPU = 1.0
#: Ray's own per-task share of an accelerator_type resource (any positive amount asks for the node type).
_ACCELERATOR_SHARE = 0.001


def engine_pool_ask(cfg: EngineConfig, *, key: str, label: str | None = None,
                    keys: Mapping[str, str] | None = None) -> Ask:
    """The pool ``run_on_dataset(ds, cfg)`` would create, as a resource :class:`Ask`.

    ``key`` is where the engine is configured (``engines.<name>``); ``keys`` overrides single keys
    where a stage sets them itself (``{"count": "generate.replicas"}``).
    """
    o = cfg.vllm
    resources: dict[str, float] = {"CPU": o.cpus_per_replica}
    local = not cfg.is_http
    if local and o.gpus_per_replica:
        resources["GPU"] = o.gpus_per_replica
    if local and o.accelerator_type:
        resources[ACCELERATOR_PREFIX + o.accelerator_type] = _ACCELERATOR_SHARE
    names = {"CPU": f"{key}.vllm.cpus_per_replica", "GPU": f"{key}.vllm.gpus_per_replica",
             "accelerator_type": f"{key}.vllm.accelerator_type", "count": f"{key}.vllm.replicas", **(keys or {})}
    kind = ("vLLM" if cfg.backend == "vllm" else cfg.backend) + " engine"
    return Ask(
        label=label or f"{kind} {cfg.label!r}", resources=resources, count=o.replicas, keys=names, min_count=1,
        # a GPU replica's CPUs feed the GPU: not lowered; a CPU replica keeps its threads (resize_engine)
        min_cpus=None if resources.get("GPU") else min(o.cpus_per_replica, _MIN_ENGINE_CPU if local else LIGHT_CPU),
        light=cfg.is_http, keeps_threads=local,
    )


def resize_engine(cfg: EngineConfig, ask: Ask) -> tuple[EngineConfig, int | None]:
    """``cfg`` with the fitted ask's replicas and CPUs; and the thread count its replicas keep.

    A local engine's reservation lowered below its configured CPUs still runs that many threads
    (Ray would set ``OMP_NUM_THREADS`` from the lower share, and one thread halves CPU decoding):
    the second value is that count, for ``run_on_dataset(threads=...)``; None when nothing changed.
    """
    o = cfg.vllm
    if ask.count == o.replicas and math.isclose(ask.cpus, o.cpus_per_replica):
        return cfg, None
    threads = None
    if not cfg.is_http and ask.cpus < o.cpus_per_replica and o.cpus_per_replica >= 1:
        threads = max(1, math.floor(o.cpus_per_replica))
    vllm = o.model_copy(update={"replicas": ask.count, "cpus_per_replica": ask.cpus})
    return cfg.model_copy(update={"vllm": vllm}), threads
