"""The one token bucket and the one retry backoff."""

from __future__ import annotations

import random

import pytest

from titan_actors.domain.throttle import TokenBucket, backoff_s


def test_backoff_grows_exponentially_is_capped_and_never_overflows() -> None:
    rng = random.Random(7)
    waits = [backoff_s(a, first_s=0.2, max_s=5.0, rng=rng) for a in range(6)]
    for attempt, wait in enumerate(waits):
        ceiling = min(5.0, 0.2 * 2**attempt)
        assert ceiling / 2 <= wait <= ceiling
    for attempt in (1_000, 10_000, 10**9):  # 2**attempt used to overflow near 1,000
        assert 2.5 <= backoff_s(attempt, first_s=0.2, max_s=5.0, rng=rng) <= 5.0


def test_backoff_is_jittered() -> None:
    rng = random.Random(1)
    assert len({backoff_s(3, first_s=0.2, max_s=5.0, rng=rng) for _ in range(20)}) > 10


def test_a_bucket_admits_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(2.0, 0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.available(0.25) == pytest.approx(0.5)
    assert bucket.take(0.5) is True and bucket.take(0.5) is False


def test_a_rate_below_one_per_second_still_lets_an_order_through() -> None:
    bucket = TokenBucket(0.5, 0.0)
    assert bucket.take(0.0) is True and bucket.take(1.0) is False and bucket.take(2.0) is True


def test_time_going_backwards_adds_no_tokens() -> None:
    bucket = TokenBucket(10.0, 5.0, burst=1.0)
    assert bucket.take(5.0) is True
    assert bucket.take(4.0) is False
