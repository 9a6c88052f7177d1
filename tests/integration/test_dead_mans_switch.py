"""The dead man's switch (issue 18, item 5): a strategy's heartbeats keep a
scope trading; without one in time the engine cancels the scope's resting
orders and sets it REDUCING — and the exchanges' own cancel-all-after,
kept armed by the adapter, kills resting orders even when the whole engine
dies."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.integration.test_venue_streams import _subscribed
from tests.integration.test_venues import Venue
from tests.support.engine import FAST_SUPERVISION, RunningEngine, rest, wait_for
from tests.support.nats import command, read_stream, signed
from titan_actors.domain.ids import client_order_id
from titan_actors.wire import subjects


def beat(client: Any, timeout_ms: int, scope: str = "global") -> dict[str, Any]:
    return client.request({"type": "HEARTBEAT", "ts": int(time.time() * 1000), "scope": scope,
                           "timeout_ms": timeout_ms, "req_id": "hb"})


def test_the_switch_fires_after_its_timeout_and_not_before(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            assert beat(client, 100)["code"] == "INVALID", "under the 500 ms floor"
            reply = beat(client, 1500, "venue:paper")
            assert reply["type"] == "HEARTBEAT_OK" and reply["req_id"] == "hb", reply
            assert reply["deadline"] >= reply["ts"] + 1400
            rest(client, "dm-1")
            for _ in range(10):  # 3 s of heartbeats, twice the timeout: it never fires
                time.sleep(0.3)
                last = time.monotonic()
                assert beat(client, 1500, "venue:paper")["type"] == "HEARTBEAT_OK"
            assert engine.venue()["trading_states"] == {} and engine.venue()["open_orders"] == 1
            time.sleep(1.0)
            assert engine.venue()["trading_states"] == {} and engine.venue()["open_orders"] == 1, \
                "fired before its timeout"
            wait_for(lambda: engine.venue()["trading_states"] == {"venue:paper": "REDUCING"}, 5, 0.02,
                     "fired")
            assert time.monotonic() - last >= 1.5
            wait_for(lambda: engine.venue()["open_orders"] == 0, 5, 0.05, "its resting order canceled")
            refused = client.prepare("dm-2", "BTCUSDT", "buy", 0.01)
            assert refused["code"] == "HALTED" and "REDUCING" in refused["reason"]
            # Armed again and disarmed: nothing fires.
            assert beat(client, 600, "symbol:ETHUSDT")["type"] == "HEARTBEAT_OK"
            assert beat(client, 0, "symbol:ETHUSDT")["deadline"] is None
            time.sleep(1.0)
            assert engine.venue()["trading_states"] == {"venue:paper": "REDUCING"}
        fired = wait_for(lambda: [e for e in read_stream(engine.nats_url, subjects.RISK_STATE)
                                  if e["type"] == "DeadMansSwitchFired"], 10, 0.1, "the event")
        assert [(e["data"]["scope"], e["data"]["timeout_ms"]) for e in fired] == [("venue:paper", 1500)]
        changed = [e for e in read_stream(engine.nats_url, subjects.RISK_STATE)
                   if e["type"] == "TradingStateChanged"]
        assert changed[-1]["data"]["operator"] == "dead-man's-switch"
    finally:
        engine.stop()


def test_the_nats_operator_heartbeat_arms_the_switch_and_a_strategy_secret_cannot(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        url = engine.nats_url
        body, headers = signed(subjects.CMD_HEARTBEAT, {"scope": "global", "timeout_ms": 800},
                               engine.secret)
        assert command(url, subjects.CMD_HEARTBEAT, body, headers) == {"error": "BAD_SIGNATURE"}
        body, headers = signed(subjects.CMD_HEARTBEAT, {"timeout_ms": 10}, engine.operator_secret)
        assert command(url, subjects.CMD_HEARTBEAT, body, headers)["error"] == "INVALID"
        body, headers = signed(subjects.CMD_HEARTBEAT, {"scope": "global", "timeout_ms": 800},
                               engine.operator_secret)
        reply = command(url, subjects.CMD_HEARTBEAT, body, headers)
        assert reply["scope"] == "global" and reply["timeout_ms"] == 800 and reply["deadline"] > 0, reply
        wait_for(lambda: engine.venue()["trading_states"] == {"global": "REDUCING"}, 5, 0.05, "fired")
    finally:
        engine.stop()


def test_binances_countdown_cancel_all_is_kept_armed_and_kills_resting_orders_when_the_engine_dies(
        tmp_path: Path) -> None:
    venue = Venue(tmp_path, "binance-linear").start()
    engine, fake = venue.engine, venue.fake
    try:
        with engine.client() as client:
            rest(client, "bc-1")
            coid = client_order_id("bc-1")
            wait_for(lambda: coid in fake.orders, 5, 0.05, "at the exchange")
            assert beat(client, 3000)["type"] == "HEARTBEAT_OK"
            wait_for(lambda: ("BTCUSDT", 3000) in fake.countdown_calls, 5, 0.05, "the countdown armed")
            for _ in range(12):  # 3.6 s, past the countdown: refreshed, so the exchange never fires
                time.sleep(0.3)
                beat(client, 3000)
            assert fake.cancel_after_fired == [] and fake.orders[coid].status == "new"
            assert fake.countdown_calls.count(("BTCUSDT", 3000)) >= 3, fake.countdown_calls
        engine.kill_all()  # the whole engine dies: nobody cancels, nobody refreshes
        died = time.monotonic()
        wait_for(lambda: fake.cancel_after_fired, 6, 0.05, "the exchange's countdown fired")
        assert time.monotonic() - died <= 3.5
        assert ("BTCUSDT", [coid]) in fake.cancel_after_fired and fake.orders[coid].status == "canceled"
    finally:
        venue.stop()


def test_bybits_disconnection_protection_is_set_and_cancels_when_the_engines_stream_is_gone(
        tmp_path: Path) -> None:
    venue = Venue(tmp_path, "bybit-linear", stream=True).start()
    engine, fake = venue.engine, venue.fake
    try:
        wait_for(lambda: _subscribed(venue), 10, 0.05, "the private stream authenticated and subscribed")
        with engine.client() as client:
            rest(client, "bd-1")
            coid = client_order_id("bd-1")
            wait_for(lambda: coid in fake.orders, 5, 0.05, "at the exchange")
            assert beat(client, 2500)["type"] == "HEARTBEAT_OK"
            wait_for(lambda: fake.dcp_window_s == 3, 5, 0.05, "disconnection protection set (2.5 s -> 3 s)")
            assert fake.dcp_product == "DERIVATIVES"
        engine.kill_all()
        died = time.monotonic()
        wait_for(lambda: fake.cancel_after_fired, 6, 0.05, "the exchange canceled")
        assert 2.5 <= time.monotonic() - died <= 4.5
        assert fake.cancel_after_fired == [("*", [coid])]
    finally:
        venue.stop()
