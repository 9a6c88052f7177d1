"""The pacing of exchange requests: token bucket and priority queue, pure."""

from __future__ import annotations

from titan_actors.domain.throttle import TokenBucket
from titan_actors.venues.pacing import Pacer, Request, default_rate


def _request(kind: str, key: str) -> Request:
    return Request(kind, key, lambda: None)


def test_no_one_second_window_ever_holds_more_than_the_published_limit_less_one() -> None:
    bucket = TokenBucket(8.0, 0.0, burst=1.0)
    starts = [t / 1000 for t in range(0, 5000) if bucket.take(t / 1000)]
    busiest = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert busiest <= 9
    assert len(starts) >= 8 * 5 - 1, "and the rate itself is used"


def test_mexc_is_paced_at_80_percent_of_its_15_requests_a_second() -> None:
    assert default_rate("mexc") == 12.0
    assert default_rate("bybit") == default_rate("binance") == 8.0


def test_cancels_go_first_then_lookups_then_new_orders_then_polls() -> None:
    pacer = Pacer(rate=100.0, published=200.0, max_wait_s=1.0, now=0.0)
    for kind, key in [("poll", "trades:BTCUSDT"), ("create", "a"), ("lookup", "b"), ("cancel", "c")]:
        pacer.put(_request(kind, key), 0.0)
    assert [r.kind for r in pacer.due(0.0)] == ["cancel", "lookup", "create", "poll"]


def test_requests_for_one_order_run_one_at_a_time_in_order() -> None:
    pacer = Pacer(rate=100.0, published=200.0, max_wait_s=1.0, now=0.0)
    pacer.put(_request("create", "a"), 0.0)
    pacer.put(_request("cancel", "a"), 0.0)
    assert [r.kind for r in pacer.due(0.0)] == ["create"], "the cancel waits for its order's create"
    assert pacer.due(0.0) == []
    pacer.done("a")
    assert [r.kind for r in pacer.due(0.0)] == ["cancel"]


def test_a_poll_waiting_long_is_served_before_new_orders() -> None:
    pacer = Pacer(rate=1.0, published=3.0, max_wait_s=10.0, now=0.0)
    pacer.bucket.tokens = 0.0
    pacer.put(_request("poll", "trades:BTCUSDT"), 0.0)
    pacer.put(_request("create", "x"), 2.5)
    assert [r.kind for r in pacer.due(3.0)] == ["poll"]


def test_the_queue_is_full_when_a_new_order_would_wait_longer_than_allowed() -> None:
    pacer = Pacer(rate=8.0, published=10.0, max_wait_s=0.5, now=0.0)
    for i in range(5):
        assert not pacer.full()
        pacer.put(_request("create", f"o{i}"), 0.0)
    assert pacer.full(), "1 + 8 x 0.5 = 5 new orders may wait; the sixth gets BUSY"
    pacer.put(_request("poll", "trades:BTCUSDT"), 0.0)
    assert len([r for r in pacer.due(0.0)]) == 1
