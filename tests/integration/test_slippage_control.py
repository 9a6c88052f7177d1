"""Slippage control (issue 19, item 3): `max_slippage_bps` turns a market
order into a limit IOC at the arrival price +/- the cap, so it never fills
worse than that."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_http_read import quote
from tests.support.engine import FAST_SUPERVISION, RunningEngine, wait_for


def test_a_market_order_with_a_slippage_cap_fills_within_it_or_not_at_all(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        quote(engine, 59990, 60010)  # arrival (mid) 60000, the ask 1.67 bps above it
        with engine.client() as client:
            tight = client.prepare("sc-1", "BTCUSDT", "buy", 0.1, max_slippage_bps=1)
            assert tight["type"] == "PREPARED", tight
            order = tight["order"]
            assert (order["order_type"], order["price"], order["time_in_force"]) == ("limit", 60006, "IOC")
            assert client.confirm("sc-1")["type"] == "ACCEPTED"
            done = client.next_execution(timeout=5)
            while done["status"] not in ("FILLED", "CANCELED", "EXPIRED"):
                done = client.next_execution(timeout=5)
            assert done["status"] in ("CANCELED", "EXPIRED") and done["filled_qty"] == 0, done
            loose = client.prepare("sc-2", "BTCUSDT", "sell", 0.1, max_slippage_bps=5)
            assert loose["order"]["price"] == 59970 and loose["order"]["time_in_force"] == "IOC"
            assert client.confirm("sc-2")["type"] == "ACCEPTED"
            wait_for(lambda: engine.actor("position:BTCUSDT")["detail"]["net"].get("paper") == -0.1, 5, 0.05,
                     "filled at the bid, inside the cap")
            limit = client.prepare("sc-3", "BTCUSDT", "buy", 0.1, "limit", price=61000.0, max_slippage_bps=2)
            assert limit["order"]["price"] == 60012 and limit["order"]["time_in_force"] == "GTC"
            refused = client.prepare("sc-4", "BTCUSDT", "buy", 0.1, max_slippage_bps=-1)
            assert refused["code"] == "INVALID" and refused["reason"].startswith("max_slippage_bps:")
    finally:
        engine.stop()
