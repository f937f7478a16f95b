"""A stage whose Ray work stops moving while Ray waits for resources fails instead of hanging.

Why: the up-front check (:mod:`mentalchat.core.resources`) cannot see everything: another job
holding the CPUs, a node that died, an autoscaler that cannot launch the node type it promised, a
placement group left behind by an earlier stage. Ray then waits without a word. The
:class:`StallWatchdog` runs a thread beside the stage's Ray work; the stage calls :meth:`tick` as
results arrive (a Ray Data iterator's batches, a Tune trial's reports). When nothing has arrived
for ``timeout_s`` and for the whole of that time the cluster reported resource demands it could
not meet (and launched no node for them), the watchdog interrupts the main thread, and leaving the ``with`` block raises
:class:`ResourceStallError` naming what was pending and the setting to change.

``MENTALCHAT_STALL_TIMEOUT_S`` sets the timeout (default 300 s, 1800 s on a launcher or KubeRay
cluster; ``0`` turns the watchdog off).
A stall with no pending demand (a slow model) is only logged: waiting on work is not waiting on Ray.
"""

from __future__ import annotations

import _thread
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Self, TypeVar

from mentalchat.errors import StageError, UsageError

__all__ = ["DEFAULT_STALL_TIMEOUT_S", "STALL_ENV", "ResourceStallError", "StallWatchdog", "pending_demands", "stall_timeout"]

log = logging.getLogger(__name__)

STALL_ENV = "MENTALCHAT_STALL_TIMEOUT_S"
DEFAULT_STALL_TIMEOUT_S = 300.0
AUTOSCALING_STALL_TIMEOUT_S = 1800.0

T = TypeVar("T")

#: Returns the cluster's unmet resource demands as text ("2 x {CPU: 2}"), "" when none, None when unknown.
PendingProbe = Callable[[], str | None]


class ResourceStallError(StageError):
    """The stage made no progress while Ray waited for resources the cluster did not provide."""


def stall_timeout() -> float:
    """``MENTALCHAT_STALL_TIMEOUT_S``, else 300 s; 1800 s where an autoscaler may be starting nodes
    that Ray does not report as launching (the launcher's and KubeRay's v1 autoscaler; cold GPU
    nodes take many minutes)."""
    raw = os.environ.get(STALL_ENV, "").strip()
    if not raw:
        from mentalchat.core.resources import autoscaler_may_add_nodes

        return AUTOSCALING_STALL_TIMEOUT_S if autoscaler_may_add_nodes() else DEFAULT_STALL_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{STALL_ENV}={raw!r}: give seconds (0 turns the watchdog off)") from None
    if value < 0:
        raise UsageError(f"{STALL_ENV}={raw!r}: give seconds (0 turns the watchdog off)")
    return value


def pending_demands() -> str | None:
    """Unmet task/actor and placement-group demands of the connected cluster (Ray's autoscaler state).

    "" while the autoscaler is launching nodes (cold GPU nodes take minutes), None when unknown.
    """
    try:
        import ray
        from ray.autoscaler.v2.sdk import get_cluster_status

        status = get_cluster_status(ray.get_runtime_context().gcs_address, timeout=10)
    except Exception as exc:  # noqa: BLE001 - unknown is not "nothing pending"
        log.debug("cannot read the cluster's resource demands: %s", exc)
        return None
    if status.pending_launches or status.pending_nodes:
        return ""  # the autoscaler is bringing nodes up: waiting for them is not a stall
    demands = status.resource_demands
    parts = []
    for demand in [*demands.ray_task_actor_demand, *demands.placement_group_demand]:
        for b in demand.bundles_by_count:
            shape = ", ".join(f"{k}: {v:g}" for k, v in sorted(b.bundle.items()))
            parts.append(f"{b.count} x {{{shape}}}")
    return "; ".join(parts)


class StallWatchdog:
    """Context manager: fail the stage when its Ray work stalls on resources (see the module doc).

    ``hint`` ends the error (which config keys to look at). ``probe`` and ``poll_s`` are for tests.
    """

    def __init__(
        self, stage: str, *, hint: str = "", timeout_s: float | None = None, poll_s: float | None = None,
        probe: PendingProbe | None = None, interrupt: Callable[[], None] | None = None,
    ) -> None:
        self.stage = stage
        self.hint = hint
        self.timeout_s = stall_timeout() if timeout_s is None else timeout_s
        self.poll_s = poll_s if poll_s is not None else max(0.05, min(5.0, self.timeout_s / 10 or 5.0))
        self.probe = probe or pending_demands
        self._interrupt = interrupt or _thread.interrupt_main
        self._last = time.monotonic()
        self._pending_since: float | None = None
        self._pending = ""
        self._ticks = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._armed = True
        self.fired: str | None = None  # the error message, once it fired

    # -- the stage's side ---------------------------------------------------------------------------
    def tick(self, n: int = 1) -> None:
        """Results arrived: the work is moving."""
        self._ticks += n
        self._last = time.monotonic()
        self._pending_since = None

    def watch(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, ticking for each."""
        for item in items:
            self.tick()
            yield item

    def __enter__(self) -> Self:
        self._last = time.monotonic()
        if self._interrupt is _thread.interrupt_main and threading.current_thread() is not threading.main_thread():
            # the interrupt would land in the main thread, not in this stage's wait: log only
            self._armed = False
        if self.timeout_s > 0:
            self._thread = threading.Thread(target=self._run, name=f"stall-watchdog-{self.stage}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.fired is not None and self._armed:
            raise ResourceStallError(self.fired) from exc
        return False

    # -- the watching thread --------------------------------------------------------------------------
    def _run(self) -> None:
        warned = False
        while not self._stop.wait(self.poll_s):
            now = time.monotonic()
            pending = self.probe()
            if pending:
                if self._pending_since is None:
                    self._pending_since = now
                self._pending = pending
            else:
                self._pending_since = None
            idle = now - self._last
            if idle < self.timeout_s:
                warned = False
                continue
            if self._pending_since is not None and now - self._pending_since >= self.timeout_s:
                self.fired = (
                    f"{self.stage}: no progress for {idle:.0f} s while Ray waited for resources this cluster did "
                    f"not grant (pending: {self._pending}; {self._ticks} results so far). "
                    + (self.hint + " " if self.hint else "")
                    + f"`ray status` shows what holds the cluster; {STALL_ENV} sets how long to wait (0: forever)."
                )
                log.error("%s", self.fired)
                if self._armed:
                    self._interrupt()
                return
            if not warned:
                warned = True
                log.warning("%s: no progress for %.0f s (%s)", self.stage, idle,
                            "nothing pending on Ray: still working" if pending == "" else
                            "the cluster's resource demands are unknown" if pending is None else
                            f"pending: {pending}")
