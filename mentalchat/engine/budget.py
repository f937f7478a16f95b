"""Dollar caps on API calls: one guard per process, or one Ray actor for a whole cluster.

Before each attempt the call's worst-case cost (estimated input tokens plus ``max_tokens``
output, :func:`mentalchat.engine.pricing.worst_case_cost`) is reserved; a call is refused when
spent + reserved + its estimate would pass the cap, so the cap holds with calls in flight. On
completion the reservation is replaced by the actual cost (0 for a failed call). A stage that
sends work elsewhere in waves (the judge's Ray sweep) reserves a wave's worst case on the same
guard with :meth:`BudgetGuard.try_reserve_now` and settles it when the wave is back.
"""

from __future__ import annotations

import threading
from typing import Any

from mentalchat.engine.limiter import RAY_NAMESPACE

__all__ = ["BUDGET_ERROR", "BudgetGuard", "ClusterBudget"]

#: The error text of a request the guard refused (its ``error_kind`` is ``budget``).
BUDGET_ERROR = "budget exceeded"


class BudgetGuard:
    """A dollar cap shared by every engine (and thread) holding it."""

    def __init__(self, cap_usd: float) -> None:
        if cap_usd < 0:
            raise ValueError("budget cap must be >= 0")
        self.cap_usd = float(cap_usd)
        self._spent = 0.0
        self._reserved = 0.0
        self._refused = 0
        self._lock = threading.Lock()

    def try_reserve_now(self, usd: float) -> bool:
        with self._lock:
            if self._spent + self._reserved + usd > self.cap_usd + 1e-12:
                self._refused += 1
                return False
            self._reserved += usd
            return True

    def settle_now(self, reserved: float, actual: float) -> None:
        with self._lock:
            self._reserved = max(0.0, self._reserved - reserved)
            self._spent += actual

    async def reserve(self, usd: float) -> bool:
        return self.try_reserve_now(usd)

    async def settle(self, reserved: float, actual: float) -> None:
        self.settle_now(reserved, actual)

    async def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {"cap_usd": self.cap_usd, "spent_usd": self._spent, "reserved_usd": self._reserved, "refused": self._refused}

    @property
    def spent_usd(self) -> float:
        with self._lock:
            return self._spent

    def __getstate__(self) -> dict[str, Any]:  # a copy sent to another process would not be shared
        raise TypeError("BudgetGuard is process-local; use ClusterBudget across Ray workers")


class _BudgetActor:
    def __init__(self, cap_usd: float) -> None:
        self._guard = BudgetGuard(cap_usd)

    def reserve(self, usd: float) -> bool:
        return self._guard.try_reserve_now(usd)

    def settle(self, reserved: float, actual: float) -> None:
        self._guard.settle_now(reserved, actual)

    async def snapshot(self) -> dict[str, float]:
        return await self._guard.snapshot()


class ClusterBudget:
    """A :class:`BudgetGuard` shared by all Ray workers: a named detached actor (first cap wins)."""

    def __init__(self, name: str, cap_usd: float) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("ClusterBudget needs a running Ray cluster (ray.init)")
        self.name = name
        self._handle = (
            ray.remote(_BudgetActor)
            .options(name=name, namespace=RAY_NAMESPACE, get_if_exists=True, lifetime="detached", num_cpus=0, max_concurrency=1000)
            .remote(cap_usd)
        )

    async def reserve(self, usd: float) -> bool:
        return await self._handle.reserve.remote(usd)

    async def settle(self, reserved: float, actual: float) -> None:
        await self._handle.settle.remote(reserved, actual)

    async def snapshot(self) -> dict[str, float]:
        return await self._handle.snapshot.remote()

    def kill(self) -> None:
        import ray

        ray.kill(self._handle)
