"""Spot reconciliation: a wallet balance is every coin of the asset, the
shadow position only the engine's own, and a balance has no entry price
(issue 16, item 5)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.test_venues import Venue
from tests.support.engine import titan_cmd, wait_for
from tests.support.nats import read_stream
from titan_actors.wire import subjects


def test_coins_already_in_the_wallet_are_not_drift_and_the_entry_price_is_kept(tmp_path: Path) -> None:
    venue = Venue(tmp_path, "bybit-spot", 'reconcile_policy = "adopt"', reconcile_s=0.3)
    venue.fake.deposits["BTC"] = 0.5  # held before the engine ever traded
    venue.start()
    engine = venue.engine

    def view() -> dict:
        return engine.actor("position:BTCUSDT")["detail"]

    try:
        with engine.client() as client:
            assert client.prepare("w-1", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
            assert client.confirm("w-1")["type"] == "ACCEPTED"
        wait_for(lambda: view()["venues"]["ex"]["qty"] == 0.01, 10, 0.05, "the fill")
        first = view()["reconciled"]["ex"]["at"]
        wait_for(lambda: view()["reconciled"]["ex"]["at"] > first, 10, 0.05, "a later reconciliation")
        detail = view()
        assert detail["reconciled"]["ex"]["result"] == "ok", "the wallet's own 0.5 BTC is not drift"
        assert detail["wallet_base"] == {"ex": 0.5}
        assert detail["venues"]["ex"]["avg_entry"] == 60000
        # Someone sells 0.002 of the engine's coins on the exchange's site: drift, adopted;
        # the wallet has no entry price, so the engine's stays.
        venue.fake.bad_trade(None, 0.002, 61000.0, side="sell")
        wait_for(lambda: view()["venues"]["ex"]["qty"] == 0.008, 10, 0.05, "the drift adopted")
        assert view()["venues"]["ex"]["avg_entry"] == 60000
        (drift,) = [e["data"] for e in read_stream(engine.nats_url, subjects.drift("BTCUSDT"))
                    if e["type"] == "PositionDrift"]
        assert (drift["shadow_qty"], drift["venue_qty"], drift["wallet_qty"], drift["wallet_base"]) == (
            0.01, 0.008, 0.508, 0.5)
        assert drift["venue_avg_price"] is None
    finally:
        venue.stop()


def test_flatten_on_spot_sells_what_the_engine_bought_and_leaves_the_wallets_own_coins(
        tmp_path: Path) -> None:
    venue = Venue(tmp_path, "bybit-spot", 'reconcile_policy = "adopt"', reconcile_s=0.3)
    venue.fake.deposits["BTC"] = 0.5  # the owner's coins: not the engine's to sell
    venue.start()
    engine, fake = venue.engine, venue.fake
    try:
        with engine.client() as client:
            assert client.prepare("fs-1", "BTCUSDT", "buy", 0.03)["type"] == "PREPARED"
            assert client.confirm("fs-1")["type"] == "ACCEPTED"
        wait_for(lambda: engine.actor("position:BTCUSDT")["detail"]["venues"]["ex"]["qty"] == 0.03, 10, 0.05,
                 "the buy filled")
        result = subprocess.run(titan_cmd("flatten", "--reason", "eod", "--config", str(engine.config)),
                                env=engine.env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        closing = json.loads(result.stdout)["venues"]["ex"]["closing"]
        assert closing["BTCUSDT"]["side"] == "sell" and closing["BTCUSDT"]["quantity"] == 0.03, closing
        wait_for(lambda: engine.actor("position:BTCUSDT")["detail"]["venues"]["ex"]["qty"] == 0, 10, 0.05,
                 "the engine's coins sold")
        assert fake.balance("BTC") == 0.5, "the wallet's own coins are untouched"
        (sell,) = [o for o in fake.orders.values() if o.side == "sell"]
        assert not sell.reduce_only, "a spot order carries no reduce-only flag"
    finally:
        venue.stop()
