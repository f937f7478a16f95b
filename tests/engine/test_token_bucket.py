"""The token bucket shared by the limiter and the fault server: refill, capacity, debt, try_take."""

from __future__ import annotations

import pytest

from mentalchat.engine.token_bucket import TokenBucket


def full_bucket(per_s: float, capacity: float, now: float = 100.0) -> TokenBucket:
    b = TokenBucket(per_s, capacity)
    b.t = now  # a fixed clock: every call below passes its own `now`
    return b


def test_starts_full_and_refills_at_rate_up_to_capacity() -> None:
    b = full_bucket(2.0, 4.0)
    assert b.wait_s(4, 100.0) == 0.0
    b.take(4)
    assert b.wait_s(1, 100.0) == pytest.approx(0.5)  # 1 token at 2/s
    assert b.wait_s(1, 100.25) == pytest.approx(0.25)
    assert b.wait_s(1, 200.0) == 0.0 and b.level == 4.0  # capped at capacity


def test_capacity_is_at_least_one() -> None:
    b = full_bucket(0.5, 0.1)
    assert b.capacity == 1.0
    assert b.try_take(now=100.0) == 0.0
    assert b.try_take(now=100.0) == pytest.approx(2.0)


def test_debt_a_call_bigger_than_the_bucket_waits_for_a_full_one_then_owes() -> None:
    b = full_bucket(10.0, 5.0)
    assert b.wait_s(50, 100.0) == 0.0  # needs a full bucket, not 50 tokens
    b.take(50)
    assert b.level == -45.0
    assert b.wait_s(1, 100.0) == pytest.approx(4.6)  # the debt is paid back first
    b.give(100)
    assert b.level == 5.0  # give never fills above capacity


def test_try_take_takes_only_when_admitted() -> None:
    b = full_bucket(4.0, 2.0)
    assert [b.try_take(now=100.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.25)]
    assert b.level == 0.0  # the refused call took nothing
    assert b.try_take(now=100.25) == 0.0
    assert b.try_take(3.0, now=100.25) == pytest.approx(0.5)  # n is capped at the capacity
