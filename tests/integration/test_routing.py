"""Smart routing (issue 19, item 2): `exchange: "auto"` goes to the venue
whose L2 book executes the order best after fees — the venue a hand
computation picks — and stale or thin books refuse with a named rule."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats

from tests.support.engine import FAST_SUPERVISION, RunningEngine, wait_for
from titan_actors.domain.ids import client_order_id
from titan_actors.wire import subjects

CONFIG = FAST_SUPERVISION + """
[routing]
default_venue = "pa"
max_book_age_ms = 1500

[venues.pa]
exchange = "paper"
taker_fee_bps = 10.0
symbols = ["BTCUSDT", "ETHUSDT"]

[venues.pb]
exchange = "paper"
taker_fee_bps = 2.0
symbols = ["BTCUSDT", "ETHUSDT"]
"""

BOOKS = {
    "pa": {"bids": [[60100, 1], [60050, 5]], "asks": [[60110, 1]]},
    "pb": {"bids": [[60000, 1]], "asks": [[60010, 1], [60020, 2]]},
}
FEES = {"pa": Decimal("0.001"), "pb": Decimal("0.0002")}


def publish_books(engine: RunningEngine) -> None:
    async def run() -> None:
        nc = await nats.connect(engine.nats_url)
        for venue, book in BOOKS.items():
            await nc.publish(f"{subjects.MARKET_BOOK}.BTCUSDT", json.dumps(
                {"symbol": "BTCUSDT", "venue": venue, **book, "ts": time.time_ns() // 1_000_000}).encode())
        await nc.flush()
        await nc.close()

    asyncio.run(run())


def by_hand(side: str, qty: Decimal) -> str:
    """Walk each book, add the fee, pick the cheapest buy or the best-paying sell."""
    costs = {}
    for venue, book in BOOKS.items():
        left, notional = qty, Decimal(0)
        for price, size in book["asks" if side == "buy" else "bids"]:
            take = min(left, Decimal(size))
            notional += take * price
            left -= take
        if left:
            continue
        avg = notional / qty
        costs[venue] = avg * (1 + FEES[venue]) if side == "buy" else avg * (1 - FEES[venue])
    return (min if side == "buy" else max)(costs, key=costs.__getitem__)


def test_auto_routes_to_the_venue_a_hand_computation_picks_and_refuses_stale_or_thin_books(
        tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, CONFIG).start()
    try:
        with engine.client() as client:
            refused = client.prepare("rt-0", "BTCUSDT", "buy", 0.5, exchange="auto")
            assert (refused["code"], refused["rule"]) == ("RISK_REJECTED", "book_stale"), refused
            publish_books(engine)
            time.sleep(0.2)

            def prepared(signal: str, side: str, qty: float) -> dict[str, Any]:
                return wait_for(lambda: (r := client.prepare(signal, "BTCUSDT", side, qty, exchange="auto"))
                                .get("type") == "PREPARED" and r, 5, 0.1, f"{signal} routed")

            buy = prepared("rt-1", "buy", 0.5)
            assert buy["order"]["exchange"] == by_hand("buy", Decimal("0.5")) == "pb"
            sell = prepared("rt-2", "sell", 0.5)
            assert sell["order"]["exchange"] == by_hand("sell", Decimal("0.5")) == "pa"
            deep = prepared("rt-3", "sell", 3)  # only pa's book is deep enough, 5.5 bps under its best
            assert deep["order"]["exchange"] == by_hand("sell", Decimal(3)) == "pa"
            assert client.confirm("rt-1")["exchange"] == "pb", "CONFIRM goes to the chosen venue"
            thin = client.prepare("rt-4", "BTCUSDT", "buy", 5, exchange="auto")
            assert (thin["code"], thin["rule"]) == ("RISK_REJECTED", "book_thin"), thin
            capped = client.prepare("rt-5", "BTCUSDT", "sell", 3, exchange="auto", max_slippage_bps=2)
            assert capped["rule"] == "book_thin", "pa's 5.5 bps is over this order's own cap"
            # split: pb's two levels are cheapest (3), then pa's first (24.7 bps worse, inside 50): two legs
            publish_books(engine)
            time.sleep(0.2)
            parent = client.prepare("rt-s", "BTCUSDT", "buy", 3.5, exchange="auto", split=True)
            assert parent["type"] == "PREPARED", parent
            assert parent["order"]["exchange"] == "pb" and parent["order"]["algo"]["legs"] == [
                ["pb", 3, 60020], ["pa", 0.5, 60110]]
            assert client.confirm("rt-s")["type"] == "ACCEPTED"

            def journal(venue: str) -> dict[str, Any]:
                return engine.control({"cmd": "venue_orders", "venue": venue})["journal"]

            wait_for(lambda: journal("pb")[client_order_id("rt-s")]["status"] == "FILLED", 10, 0.1,
                     "the split filled on both venues")
            assert journal("pb")[client_order_id("rt-s.1")]["filled_qty"] == 3
            assert journal("pa")[client_order_id("rt-s.2")]["filled_qty"] == 0.5
            nets = engine.actor("position:BTCUSDT")["detail"]["net"]
            assert (nets["pa"], nets["pb"]) == (0.5, 3.5), "pb also holds rt-1's 0.5"
            assert client.prepare("rt-x", "BTCUSDT", "buy", 1, split=True)["code"] == "INVALID"
            time.sleep(1.7)
            stale = client.prepare("rt-6", "BTCUSDT", "buy", 0.5, exchange="auto")
            assert stale["rule"] == "book_stale", stale
            unknown = client.prepare("rt-7", "SOLUSDT", "buy", 0.5, exchange="auto")
            assert unknown["code"] == "INVALID"
    finally:
        engine.stop()
