"""One token bucket for both sides of a rate limit.

Why: the client-side limiter (:mod:`mentalchat.engine.limiter`) and the test server that enforces a
provider-style rate limit (:mod:`mentalchat.testing.fault_server`) must count admissions the same
way, so the tests that pit one against the other measure the limiter, not two slightly different
buckets. Not thread-safe: callers hold their own lock.
"""

from __future__ import annotations

import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """Token bucket that may go into debt (a call bigger than the bucket waits for a full one).

    ``per_s`` tokens are added per second up to ``capacity`` (at least 1); the bucket starts full.
    Times are ``time.monotonic()`` seconds.
    """

    def __init__(self, per_s: float, capacity: float) -> None:
        self.rate = per_s
        self.capacity = max(capacity, 1.0)
        self.level = self.capacity
        self.t = time.monotonic()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now

    def wait_s(self, n: float, now: float) -> float:
        """Seconds until ``n`` tokens (at most a full bucket) are there; 0 when they are now."""
        self._refill(now)
        need = min(n, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, n: float) -> None:
        """Remove ``n`` tokens, going into debt if there are fewer."""
        self.level -= n

    def give(self, n: float) -> None:
        """Return ``n`` tokens (e.g. an over-estimate), never above capacity."""
        self.level = min(self.capacity, self.level + n)

    def try_take(self, n: float = 1.0, now: float | None = None) -> float:
        """Take ``n`` tokens if they are there: 0 when admitted, else the seconds to wait (nothing taken)."""
        wait = self.wait_s(n, time.monotonic() if now is None else now)
        if wait == 0.0:
            self.take(n)
        return wait
