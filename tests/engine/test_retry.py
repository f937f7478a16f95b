"""Retry decisions as objects: what RetryPolicy decides for each kind of failed attempt."""

from __future__ import annotations

import random

import pytest

from mentalchat.engine.config import HTTPOptions
from mentalchat.engine.retry import CallError, RetryPolicy, status_error

OPTS = HTTPOptions(max_retries=3, backoff_base_s=1.0, backoff_max_s=4.0)


@pytest.mark.parametrize(
    ("status", "kind", "retryable", "outcome"),
    [
        (429, "rate_limited", True, "rate_limited"),
        (503, "http_5xx", True, "error"),
        (500, "http_5xx", True, "error"),
        (599, "http_5xx", True, "error"),
        (408, "timeout", True, "error"),
        (409, "http_4xx", True, "error"),
        (400, "http_4xx", False, "error"),
        (401, "http_4xx", False, "error"),
        (404, "http_4xx", False, "error"),
    ],
)
def test_status_errors_are_classified(status: int, kind: str, retryable: bool, outcome: str) -> None:
    err = status_error(status, "boom")
    assert (err.kind, err.retryable, err.outcome, err.status) == (kind, retryable, outcome, status)
    assert err.describe() == f"HTTP {status}: boom"


def test_not_retryable_fails_at_once() -> None:
    decision = RetryPolicy(OPTS).decide(status_error(400, "bad"), attempts=1)
    assert not decision.retry and decision.why_not == "not retried"


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(OPTS)
    err = status_error(503, "down")
    assert all(policy.decide(err, attempts=n).retry for n in (1, 2, 3))
    last = policy.decide(err, attempts=4)
    assert not last.retry and last.why_not == "gave up after 4 attempts"


def test_full_jitter_backoff_stays_inside_its_window() -> None:
    policy = RetryPolicy(OPTS, rng=random.Random(0))
    err = CallError("timed out", kind="timeout", retryable=True)
    for attempts, cap in ((1, 1.0), (2, 2.0), (3, 4.0)):
        delays = [policy.decide(err, attempts).delay_s for _ in range(200)]
        assert 0.0 <= min(delays) and max(delays) <= cap
        assert max(delays) > 0.8 * cap  # full jitter: the whole window is used
    assert RetryPolicy(HTTPOptions(max_retries=20, backoff_base_s=1.0, backoff_max_s=4.0)).decide(err, 10).delay_s <= 4.0


def test_retry_after_is_honoured_with_a_little_jitter_and_refused_when_too_long() -> None:
    policy = RetryPolicy(OPTS, rng=random.Random(1))
    delays = [policy.decide(status_error(429, "slow down", retry_after_s=2.0), 1).delay_s for _ in range(100)]
    assert 2.0 <= min(delays) and max(delays) <= 2.2
    too_long = policy.decide(status_error(429, "quota", retry_after_s=41.0), 1)  # > 10 x backoff_max_s
    assert not too_long.retry and "beyond 10 x backoff_max_s" in (too_long.why_not or "")
