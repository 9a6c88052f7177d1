"""The exchanges' private streams (websockets, through ccxt.pro) feeding the
engine: fills and order changes at the venue arrive without a poll, over a
stream the fake authenticates as the exchange does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_venues import Venue, _executions
from tests.support.engine import wait_for
from titan_actors.domain.ids import client_order_id

#: Every venue whose private stream ccxt speaks without extra packages.
STREAMED = ["bybit-linear", "bybit-spot", "binance-linear", "binance-spot", "mexc-swap"]
#: The REST paths that would have found a fill or a cancel by polling.
_POLLED = (
    "/v5/execution/list",
    "/v5/order/",
    "userTrades",
    "myTrades",
    "openOrders",
    "/order/",
    "order_deals",
)


def _quiet(venue: Venue, for_s: float = 0.7) -> None:
    """Wait until the engine has asked the venue nothing for `for_s`."""
    wait_for(lambda: time.monotonic() - venue.fake.calls[-1].at > for_s, 10, 0.05, "the engine idle")


def _subscribed(venue: Venue) -> bool:
    """The fake pushes this account's changes to a connection of the engine."""
    assert venue.fake.stream is not None
    return any(venue.fake.ws_following(c) for c in venue.fake.stream.connections)


@contextmanager
def _resting_order(tmp_path: Path, case: str, signal_id: str) -> Iterator[tuple[Venue, Any, str]]:
    """An engine on `case`'s fake, polling (almost) never, its stream followed,
    with a resting limit buy of 0.02 BTC: (venue, client, client order id)."""
    venue = Venue(tmp_path, case, poll_ms=600_000, reconcile_s=600, stream=True).start()
    try:
        wait_for(lambda: _subscribed(venue), 10, 0.05, "the stream authenticated and subscribed")
        with venue.engine.client() as client:
            client.prepare(signal_id, "BTCUSDT", "buy", 0.02, order_type="limit", price=50000.0)
            assert client.confirm(signal_id)["type"] == "ACCEPTED"
            coid = client_order_id(signal_id)
            wait_for(lambda: coid in venue.fake.orders, 5, 0.02, "the limit order at the venue")
            yield venue, client, coid
    finally:
        venue.stop()


@pytest.mark.parametrize("case", STREAMED)
def test_fills_and_cancels_at_the_venue_arrive_over_its_private_stream_without_a_poll(
    tmp_path: Path, case: str
) -> None:
    with _resting_order(tmp_path, case, "s-1") as (venue, client, coid):
        _quiet(venue)  # the create's trade poll and the start's reconciliations are done
        since = time.monotonic()
        venue.fake.fill(coid, 0.005)
        part = _executions(client, lambda e: e["status"] == "PARTIALLY_FILLED", timeout=5)[-1]
        (trade,) = [t for t in venue.fake.trades if t.order.client_id == coid]
        assert part["last_fill"]["trade_id"] == trade.trade_id
        assert part["filled_qty"] == pytest.approx(0.005)
        venue.fake.cancel(client_id=coid)  # canceled at the venue (an operator, a liquidation)
        canceled = _executions(client, lambda e: e["status"] == "CANCELED", timeout=5)[-1]
        assert canceled["filled_qty"] == pytest.approx(0.005)
        polled = [c for c in venue.fake.calls if c.at >= since and any(p in c.path for p in _POLLED)]
        assert polled == [], "found by the stream, not by a poll"
        assert venue.detail()["stream"] == "up"
        assert venue.fake.ws_logins["bad"] == 0
        # The position actor gets the fills as deliveries, a few ms after the client.
        wait_for(lambda: venue.engine.actor("position:BTCUSDT")["detail"]["net"].get("ex")
                 == pytest.approx(0.005), 5, 0.02, "the position counts every fill")


@pytest.mark.parametrize("case", ["bybit-linear", "binance-linear"])
def test_a_dropped_stream_is_reconnected_and_authenticated_again_and_fills_go_on_arriving(
    tmp_path: Path, case: str
) -> None:
    with _resting_order(tmp_path, case, "d-1") as (venue, client, coid):
        logins = venue.fake.ws_logins["ok"]
        assert venue.fake.stream is not None
        venue.fake.stream.drop_connections()
        wait_for(lambda: venue.detail()["stream"] == "down", 5, 0.02, "the adapter saw the stream drop")
        wait_for(lambda: venue.fake.ws_logins["ok"] > logins, 10, 0.05, "a new authenticated stream")
        wait_for(lambda: _subscribed(venue), 10, 0.02, "subscribed again")
        venue.fake.fill(coid, 0.02)
        filled = _executions(client, lambda e: e["status"] == "FILLED", timeout=10)[-1]
        assert filled["filled_qty"] == pytest.approx(0.02)
        assert (venue.detail()["stream"], venue.detail()["stream_error"]) == ("up", "")
