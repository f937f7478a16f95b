"""Before a stage starts its Ray work: will what it asks for fit this cluster?

Why: Ray waits without a word for resources that never come. An actor pool whose actors do not
fit on one node together ("pending: 2 CPU" on a 2-core laptop), a vLLM replica asking for a GPU on
a CPU cluster, a Tune trial asking for ``accelerator_type: A100`` where there is none: each stage
used to hang forever. Each stage now describes what it will ask for as :class:`Ask` s (one per
actor pool or worker group, with the config key that sets it), and :func:`fit_asks` compares them
with the cluster's nodes (:meth:`ClusterShape.from_ray`: the live nodes, plus the node types an
autoscaler may still launch). It either returns the asks sized down where that is safe (fewer
replicas; light actors' CPU share lowered to a sliver; a CPU engine's reservation lowered to what
the node has while it keeps its thread count) or raises :class:`ResourceFitError` naming the
missing resource and the config key to change.

Pure logic apart from :meth:`ClusterShape.from_ray`, so it is tested with fake clusters.
``MENTALCHAT_RESOURCE_CHECK=off`` skips the check (``error`` refuses to size anything down).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mentalchat.errors import UsageError

__all__ = [
    "ACCELERATOR_PREFIX",
    "CHECK_ENV",
    "Ask",
    "ClusterShape",
    "Fit",
    "NodeShape",
    "ResourceFitError",
    "check_mode",
    "ensure_fits",
    "fit_asks",
    "fits_together",
]

log = logging.getLogger(__name__)

ACCELERATOR_PREFIX = "accelerator_type:"
#: ``fit`` (default: size down where safe, else error), ``error`` (never size down), ``off``.
CHECK_ENV = "MENTALCHAT_RESOURCE_CHECK"
_EPS = 1e-9
#: Resources Ray reports that no ask of ours names; never compared.
_IGNORED = ("memory", "object_store_memory")


class ResourceFitError(UsageError):
    """What a stage would ask Ray for cannot be granted by this cluster (it would wait forever)."""


@dataclass(frozen=True)
class Ask:
    """One actor pool or worker group of a stage: ``count`` bundles of ``resources``, each on one node.

    ``keys`` maps a resource (``CPU``, ``GPU``, ``accelerator_type``) and ``count`` to the config
    key that sets it, for the error message (``GPU_off``: a switch that turns the GPU off). ``min_count`` is how far the pool may shrink
    (``count`` = cannot); ``min_cpus`` how far each bundle's CPU may be lowered (None = cannot).
    ``light``: mostly waiting (de-identification, HTTP calls), lowered first.
    """

    label: str
    resources: Mapping[str, float]
    count: int = 1
    keys: Mapping[str, str] = field(default_factory=dict)
    min_count: int | None = None
    min_cpus: float | None = None
    light: bool = False
    #: Bundles must share one node (a STRICT_PACK placement group).
    same_node: bool = False
    #: Lowering its CPU share keeps its thread count (the caller sets OMP_NUM_THREADS): said in the message.
    keeps_threads: bool = False

    @property
    def cpus(self) -> float:
        return float(self.resources.get("CPU", 0.0))

    def key(self, resource: str) -> str:
        if resource.startswith(ACCELERATOR_PREFIX):
            return self.keys.get("accelerator_type") or self.keys.get(resource) or "accelerator_type"
        return self.keys.get(resource) or f"<{resource} of {self.label}>"

    def with_cpus(self, cpus: float) -> Ask:
        return replace(self, resources={**self.resources, "CPU": cpus})


@dataclass(frozen=True)
class NodeShape:
    """One node's total resources; ``launchable``: a node type an autoscaler may start (up to ``max_count``)."""

    name: str
    resources: Mapping[str, float]
    launchable: bool = False
    max_count: int = 1


@dataclass(frozen=True)
class ClusterShape:
    """The nodes a stage's bundles may land on."""

    nodes: tuple[NodeShape, ...]
    #: An autoscaler may run whose node types are unknown (KubeRay's v1 autoscaler does not publish
    #: them to the GCS): a missing resource may still come, so only the watchdog may stop the stage.
    may_grow: bool = False

    @classmethod
    def of(cls, *nodes: Mapping[str, float], launchable: Iterable[tuple[Mapping[str, float], int]] = ()) -> ClusterShape:
        """A fake cluster for tests: live nodes' resources, then (resources, max_count) node types."""
        live = [NodeShape(f"node{i}", dict(r)) for i, r in enumerate(nodes)]
        extra = [NodeShape(f"type{i}", dict(r), launchable=True, max_count=n) for i, (r, n) in enumerate(launchable)]
        return cls(tuple(live + extra))

    @classmethod
    def from_ray(cls) -> ClusterShape:
        """The connected cluster: alive nodes (``ray.nodes()``) and the node types an autoscaler may launch.

        Node types come from the GCS (Ray's v2 autoscaler publishes them) or the launcher's bootstrap
        config on the head; where neither has them and the cluster may still grow (KubeRay, or
        ``MENTALCHAT_CLUSTER_MAY_GROW=1``), asks that do not fit are logged, not refused.
        """
        import ray

        if not ray.is_initialized():
            ray.init()  # what Ray Data and Tune would do on their first call anyway
        nodes = [NodeShape(n.get("NodeManagerAddress", n.get("NodeID", "?")), dict(n.get("Resources") or {}))
                 for n in ray.nodes() if n.get("Alive")]
        types = _autoscaler_node_types() or _launcher_node_types()
        return cls(tuple(nodes + types), may_grow=not types and _may_grow())

    def offers(self, resource: str) -> bool:
        return any(n.resources.get(resource, 0.0) > 0 for n in self.nodes)

    def largest(self, resource: str) -> float:
        return max((float(n.resources.get(resource, 0.0)) for n in self.nodes), default=0.0)

    def accelerator_types(self) -> list[str]:
        return sorted({k[len(ACCELERATOR_PREFIX):] for n in self.nodes for k in n.resources
                       if k.startswith(ACCELERATOR_PREFIX)})

    def describe(self) -> str:
        live = [n for n in self.nodes if not n.launchable]
        kinds = [n for n in self.nodes if n.launchable]
        text = f"{len(live)} node(s), largest {_fmt(self.largest('CPU'))} CPU / {_fmt(self.largest('GPU'))} GPU"
        if kinds:
            text += f", plus {len(kinds)} node type(s) the autoscaler may launch"
        return text


def _autoscaler_node_types() -> list[NodeShape]:
    """Node types of an autoscaling cluster (KubeRay, cluster launcher), from the GCS; [] if none."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - a private API: without it, live nodes only
        return []
    out = []
    for group in getattr(config, "node_group_configs", None) or []:
        max_count = int(group.max_count)
        if max_count == 0:
            continue
        out.append(NodeShape(f"type {group.name}", dict(group.resources), launchable=True,
                             max_count=max_count if max_count > 0 else 1_000_000))
    return out


#: ``ray up`` writes the cluster's config here on the head, where ``ray job submit`` runs drivers.
LAUNCHER_CONFIG = "~/ray_bootstrap_config.yaml"
#: ``1``: the cluster may grow in ways this check cannot see (only the watchdog stops a stage); ``0``: it cannot.
MAY_GROW_ENV = "MENTALCHAT_CLUSTER_MAY_GROW"


def _launcher_node_types(path: str = LAUNCHER_CONFIG) -> list[NodeShape]:
    """Worker types of a cluster-launcher cluster, from its bootstrap config on the head; [] if none."""
    file = os.path.expanduser(path)
    if not os.path.isfile(file):
        return []
    try:
        import yaml

        with open(file, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
        head = config.get("head_node_type")
        out = []
        for name, t in (config.get("available_node_types") or {}).items():
            count = int(t.get("max_workers", config.get("max_workers", 0)) or 0)
            if name != head and count > 0 and t.get("resources"):
                out.append(NodeShape(f"type {name}", {k: float(v) for k, v in t["resources"].items()},
                                     launchable=True, max_count=count))
        return out
    except Exception as exc:  # noqa: BLE001 - an unreadable file: live nodes only
        log.debug("cannot read %s: %s", file, exc)
        return []


def autoscaler_may_add_nodes() -> bool:
    """A cluster launcher's head (its bootstrap config) or a KubeRay pod: nodes may come slowly, unannounced."""
    return bool(_launcher_node_types()) or _may_grow()


def _may_grow() -> bool:
    """Whether an autoscaler whose node types are unknown may add nodes (KubeRay's v1 autoscaler)."""
    flag = os.environ.get(MAY_GROW_ENV, "").strip()
    if flag:
        return flag not in ("0", "false", "no")
    return "RAY_CLUSTER_NAME" in os.environ  # KubeRay sets it in every Ray container


@dataclass
class Fit:
    """The asks as they will run, and one line per change made to fit."""

    asks: list[Ask]
    changes: list[str] = field(default_factory=list)

    def by_label(self, label: str) -> Ask:
        return next(a for a in self.asks if a.label == label)


def check_mode() -> str:
    mode = os.environ.get(CHECK_ENV, "fit").strip().lower() or "fit"
    if mode not in ("fit", "error", "off"):
        raise UsageError(f"{CHECK_ENV}={mode!r}: use fit, error or off")
    return mode


def _fmt(x: float) -> str:
    return f"{x:g}"


def _fits_on(bundle: Mapping[str, float], free: Mapping[str, float]) -> bool:
    return all(amount <= free.get(res, 0.0) + _EPS for res, amount in bundle.items() if amount > 0)


def _pack(asks: Sequence[Ask], cluster: ClusterShape) -> Ask | None:
    """First-fit-decreasing of every bundle on the nodes; returns the first ask that does not fit."""
    free: list[dict[str, float]] = []
    for n in cluster.nodes:
        for _ in range(min(n.max_count, 64) if n.launchable else 1):
            free.append(dict(n.resources))
    order = sorted(asks, key=lambda a: (-a.cpus * (a.count if a.same_node else 1), -sum(a.resources.values())))
    for ask in order:
        bundle = {k: v for k, v in ask.resources.items() if k not in _IGNORED}
        if ask.same_node:
            total = {k: v * ask.count for k, v in bundle.items()}
            node = next((f for f in free if _fits_on(total, f)), None)
            if node is None:
                return ask
            for k, v in total.items():
                node[k] = node.get(k, 0.0) - v
            continue
        for _ in range(ask.count):
            node = next((f for f in free if _fits_on(bundle, f)), None)
            if node is None:
                return ask
            for k, v in bundle.items():
                node[k] = node.get(k, 0.0) - v
    return None


def fits_together(asks: Sequence[Ask], cluster: ClusterShape) -> bool:
    """Whether all ``asks`` fit the cluster at once as they are (no sizing down): e.g. may several
    base models' engines run at the same time, or must they take turns."""
    return _pack([a for a in asks if a.count > 0], cluster) is None


def _check_single(ask: Ask, cluster: ClusterShape, stage: str) -> None:
    """Every resource named somewhere, and one bundle fits one node (else the config is wrong, not big)."""
    for res, amount in ask.resources.items():
        if amount <= 0 or res in _IGNORED:
            continue
        if not cluster.offers(res):
            if res.startswith(ACCELERATOR_PREFIX):
                kinds = cluster.accelerator_types()
                fix = (f"it has {', '.join(kinds)}: set {ask.key(res)} to one of them or to null" if kinds else
                       f"no node advertises an accelerator_type: set {ask.key(res)} to null")
                raise ResourceFitError(
                    f"{stage}: {ask.label} asks for accelerator_type {res[len(ACCELERATOR_PREFIX):]!r}, which no node "
                    f"of this cluster has ({cluster.describe()}); {fix}, or add a node (type) with that accelerator")
            key = ask.key(res)
            off = ask.keys.get(f"{res}_off")  # a switch that drops the resource (finetune.scaling.use_gpu)
            fix = f"set {off} to false" if off else f"set {key} to 0" if res == "GPU" else f"lower {key}"
            raise ResourceFitError(
                f"{stage}: {ask.label} asks for {_fmt(amount)} {res} each, and no node of this cluster has any {res} "
                f"({cluster.describe()}): {fix}, or add nodes with {res}")
    bundle = {k: v for k, v in ask.resources.items() if k not in _IGNORED}
    if ask.same_node:
        bundle = {k: v * ask.count for k, v in bundle.items()}
    if any(_fits_on(bundle, n.resources) for n in cluster.nodes):
        return
    short = [r for r, v in bundle.items() if v > cluster.largest(r) + _EPS] or list(bundle)
    res = short[0]
    raise ResourceFitError(
        f"{stage}: {ask.label} needs {_fmt(bundle[res])} {res} on one node ({ask.key(res)}="
        f"{_fmt(ask.resources.get(res, 0.0))}{f' x {ask.count} on one node' if ask.same_node else ''}); this "
        f"cluster's largest node has {_fmt(cluster.largest(res))} ({cluster.describe()}): lower {ask.key(res)}"
        + (f" or {ask.keys['count']}" if ask.same_node and "count" in ask.keys else "") + ", or add a larger node")


def _joint_error(asks: Sequence[Ask], failing: Ask, cluster: ClusterShape, stage: str) -> ResourceFitError:
    parts = [f"{a.label}: {_fmt(a.cpus)} CPU x {a.count} ({a.key('CPU')})" for a in asks if a.cpus]
    need = sum(a.cpus * a.count for a in asks)
    knobs: list[str] = []
    for a in sorted(asks, key=lambda a: -a.cpus * a.count):
        for k in (a.key("CPU"), a.keys.get("count") if a.count > 1 else None):
            if k and k not in knobs:
                knobs.append(k)
    return ResourceFitError(
        f"{stage}: its actors run at the same time and do not fit this cluster together ({cluster.describe()}); "
        f"{'; '.join(parts)}: {_fmt(need)} CPU in all, and no node is left for {failing.label}. Lower "
        f"{' or '.join(knobs)}, or run on a larger cluster")


def fit_asks(asks: Sequence[Ask], cluster: ClusterShape, *, stage: str, allow_resize: bool = True) -> Fit:
    """Asks that run at the same time → the same asks sized to fit ``cluster``, or a :class:`ResourceFitError`.

    Order of size-downs (each only as far as the ask allows): fewer replicas; light actors'
    CPU share to their floor; the other CPU reservations scaled down together.
    """
    asks = [a for a in asks if a.count > 0]
    try:
        for ask in asks:
            _check_single(ask, cluster, stage)
    except ResourceFitError as exc:
        if not cluster.may_grow:
            raise
        log.warning("%s (not refused: an autoscaler may still add such a node; the stall watchdog is on)", exc)
        return Fit(list(asks))
    failing = _pack(asks, cluster)
    if failing is None:
        return Fit(list(asks))
    if cluster.may_grow:  # more nodes may come: nothing to shrink for
        return Fit(list(asks))
    if not allow_resize:
        raise _joint_error(asks, failing, cluster, stage)
    current = list(asks)
    changes: list[str] = []
    # 1. fewer replicas, one at a time from the biggest pool
    while failing is not None:
        shrinkable = [i for i, a in enumerate(current) if a.count > (a.min_count if a.min_count is not None else a.count)]
        if not shrinkable:
            break
        i = max(shrinkable, key=lambda j: (current[j].count, current[j].cpus))
        current[i] = replace(current[i], count=current[i].count - 1)
        failing = _pack(current, cluster)
    for new, old in zip(current, asks, strict=True):
        if new.count != old.count:
            changes.append(f"{old.label} ({old.keys.get('count', 'replicas')}): {old.count} -> {new.count}")
    # 2. light actors' CPU to their floor
    if failing is not None:
        for i, a in enumerate(current):
            if a.light and a.min_cpus is not None and a.cpus > a.min_cpus:
                changes.append(f"{a.label} ({a.key('CPU')}): {_fmt(a.cpus)} -> {_fmt(a.min_cpus)} CPU each")
                current[i] = a.with_cpus(a.min_cpus)
        failing = _pack(current, cluster)
    # 3. the rest scaled down together, in tenths, as far as their floors allow
    if failing is not None:
        heavy = [i for i, a in enumerate(current) if not a.light and a.min_cpus is not None and a.cpus > a.min_cpus]
        base = {i: current[i] for i in heavy}
        trial = list(current)
        for step in range(1, 100):
            scale = 1.0 - step / 100
            for i in heavy:
                a = base[i]
                trial[i] = a.with_cpus(max(a.min_cpus or 0.0, math.floor(a.cpus * scale * 100) / 100))
            if _pack(trial, cluster) is None:
                break
        if _pack(trial, cluster) is None:
            for i in heavy:
                if trial[i].cpus != base[i].cpus:
                    kept = (f", still {max(1, math.floor(base[i].cpus))} threads" if base[i].keeps_threads
                            and base[i].cpus >= 1 else "")
                    changes.append(f"{base[i].label} ({base[i].key('CPU')}): {_fmt(base[i].cpus)} -> "
                                   f"{_fmt(trial[i].cpus)} CPU each{kept}")
            current = trial
            failing = None
    if failing is not None:
        raise _joint_error(asks, failing, cluster, stage)
    return Fit(current, changes)


def ensure_fits(
    asks: Sequence[Ask], *, stage: str, cluster: ClusterShape | None = None,
    echo: Callable[[str], None] | None = None,
) -> Fit:
    """:func:`fit_asks` against the connected cluster (or ``cluster``), honouring ``MENTALCHAT_RESOURCE_CHECK``.

    Each size-down is logged (or echoed) once, so the run says why it is slower than configured.
    """
    mode = check_mode()
    if mode == "off":
        return Fit(list(asks))
    fit = fit_asks(asks, cluster or ClusterShape.from_ray(), stage=stage, allow_resize=mode == "fit")
    if fit.changes:
        msg = (f"{stage}: sized down to fit this cluster ({CHECK_ENV}=error refuses instead): "
               + "; ".join(fit.changes))
        (echo or log.warning)(msg)
    return fit


def describe_resources(resources: Mapping[str, Any]) -> str:
    """``{"CPU": 2, "GPU": 1}`` → ``2 CPU, 1 GPU`` (for messages)."""
    return ", ".join(f"{_fmt(float(v))} {k}" for k, v in resources.items())
