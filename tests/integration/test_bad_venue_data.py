"""Bad data from an exchange — a trade with no amount, a zero quantity, a
price of 0, a trade of an order the engine never placed — is logged and
counted, the order flagged, the position reconciled; the adapter keeps
trading (issue 16, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_venues import Venue, _executions
from tests.support.engine import wait_for
from titan_actors.domain.ids import client_order_id


@pytest.mark.parametrize("case", ["bybit-linear", "binance-linear", "mexc-swap"])
def test_bad_trades_are_reported_and_the_adapter_keeps_trading(tmp_path: Path, case: str) -> None:
    venue = Venue(tmp_path, case, 'reconcile_policy = "adopt"', reconcile_s=30).start()
    try:
        with venue.engine.client() as client:
            assert client.prepare("bad-1", "BTCUSDT", "buy", 0.01, order_type="limit",
                                  price=50000.0)["type"] == "PREPARED"
            assert client.confirm("bad-1")["type"] == "ACCEPTED"
            coid = client_order_id("bad-1")
            wait_for(lambda: coid in venue.fake.orders, 5, 0.02, "the order at the venue")
            venue.fake.bad_trade(coid, None, 50000.0)  # no amount
            venue.fake.bad_trade(coid, 0.0, 50000.0)  # nothing traded
            venue.fake.bad_trade(coid, 0.001, 0.0)  # a price of 0
            venue.fake.bad_trade(None, 0.002, 50000.0)  # someone else's order
            detail = wait_for(lambda: (d := venue.detail())["bad_venue_data"] >= 4 and d, 10, 0.05,
                              "four problems counted")
            problems = " | ".join(detail["venue_data_problems"].values())
            assert detail["bad_venue_data"] == 4, problems
            for words in ("no amount", "quantity 0", "price 0", "does not know"):
                assert words in problems, problems
            assert set(detail["flagged"]) == {coid}
            # It keeps trading: the order fills, and a new one goes through.
            venue.fake.fill(coid, 0.01)
            filled = _executions(client, lambda e: e["status"] == "FILLED", timeout=10)[-1]
            assert filled["filled_qty"] == 0.01  # the bad trades were not applied
            assert client.prepare("bad-2", "BTCUSDT", "sell", 0.01)["type"] == "PREPARED"
            assert client.confirm("bad-2")["type"] == "ACCEPTED"
        # The position was compared with the exchange at once (not at the 30 s
        # interval) and adopted what the venue holds: the two bad trades it counts.
        wait_for(lambda: venue.engine.actor("position:BTCUSDT")["detail"]["net"].get("ex")
                 == venue.fake.position("BTCUSDT"), 10, 0.05, "the position adopted from the venue")
        assert venue.fake.position("BTCUSDT") == pytest.approx(0.003)
        assert venue.engine.actor("gateway")["detail"]["serving"]
    finally:
        venue.stop()
