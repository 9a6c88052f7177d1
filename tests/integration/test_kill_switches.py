"""Operator kill switches (issue 18, item 4): cancel-all — every resting
order of a scope canceled — and flatten — then every position closed —
from the CLI, with a halt, and over NATS."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.test_venues import Venue
from tests.support.engine import FAST_SUPERVISION, RunningEngine, rest, titan_cmd, wait_for
from tests.support.nats import command, read_stream, signed
from titan_actors.domain.ids import client_order_id
from titan_actors.wire import subjects


def _titan(engine: RunningEngine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(titan_cmd(*args, "--config", str(engine.config)), env=engine.env,
                          capture_output=True, text=True, timeout=60)


def _net(engine: RunningEngine, symbol: str, venue: str = "paper") -> float | None:
    return engine.actor(f"position:{symbol}")["detail"]["net"].get(venue)


def test_cancel_all_cancels_the_scopes_resting_orders_drops_staged_ones_and_leaves_therest(
        tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            rest(client, "ka-1")
            rest(client, "ka-2")
            rest(client, "ka-eth", "ETHUSDT", 2000.0)
            assert client.prepare("ka-staged", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
            wait_for(lambda: engine.venue()["open_orders"] == 3, 5, 0.05, "three resting")
            result = _titan(engine, "cancel-all", "--scope", "symbol:BTCUSDT", "--reason", "drill")
            assert result.returncode == 0, result.stderr
            reply = json.loads(result.stdout)
            assert sorted(reply["venues"]["paper"]["canceled"]) == sorted(
                [client_order_id("ka-1"), client_order_id("ka-2")])
            assert reply["venues"]["paper"]["dropped"] == [client_order_id("ka-staged")]
            assert engine.venue()["open_orders"] == 1, "ETHUSDT is outside the scope"
            refused = client.confirm("ka-staged")
            assert refused["type"] == "REJECTED", "a dropped order cannot be confirmed"
            assert client.prepare("ka-3", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED", "trading goes on"
    finally:
        engine.stop()


def test_a_halt_with_cancel_open_halts_first_then_cancels(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            rest(client, "hc-1")
        wait_for(lambda: engine.venue()["open_orders"] == 1, 5, 0.05, "resting")
        result = _titan(engine, "halt", "--scope", "venue:paper", "--reason", "drill", "--cancel-open")
        assert result.returncode == 0, result.stderr
        reply = json.loads(result.stdout)
        assert reply["states"] == {"venue:paper": "HALTED"}
        assert reply["canceled"]["venues"]["paper"]["canceled"] == [client_order_id("hc-1")]
        assert engine.venue()["open_orders"] == 0
    finally:
        engine.stop()


def test_cancel_all_over_nats_with_the_operator_secret_reaches_an_exchange(tmp_path: Path) -> None:
    venue = Venue(tmp_path, "bybit-linear").start()
    engine, fake = venue.engine, venue.fake
    try:
        with engine.client() as client:
            rest(client, "kn-1")
        coid = client_order_id("kn-1")
        wait_for(lambda: coid in fake.orders, 5, 0.05, "at the exchange")
        body = {"scope": "global", "reason": "drill", "operator": "ops"}
        forged, headers = signed(subjects.CMD_CANCEL_ALL, body, engine.secret)  # the strategies' secret
        assert command(engine.nats_url, subjects.CMD_CANCEL_ALL, forged, headers)["error"] == "BAD_SIGNATURE"
        assert fake.orders[coid].status == "new"
        payload, headers = signed(subjects.CMD_CANCEL_ALL, body, engine.operator_secret)
        reply = command(engine.nats_url, subjects.CMD_CANCEL_ALL, payload, headers)
        assert reply == {"scope": "global", "venues": {"ex": {"canceled": [coid], "dropped": []}},
                         "unanswered": []}
        wait_for(lambda: fake.orders[coid].status == "canceled", 10, 0.05, "canceled at the exchange")
        wait_for(lambda: venue.detail()["live_orders"] == 0, 10, 0.05, "final in the journal")
    finally:
        venue.stop()


def test_flatten_closes_every_position_even_while_halted_and_cancels_first(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            assert client.prepare("fl-1", "BTCUSDT", "buy", 0.3)["type"] == "PREPARED"
            assert client.confirm("fl-1")["type"] == "ACCEPTED"
            assert client.prepare("fl-2", "ETHUSDT", "sell", 2)["type"] == "PREPARED"
            assert client.confirm("fl-2")["type"] == "ACCEPTED"
            rest(client, "fl-rest")
        net = {"BTCUSDT": 0.3, "ETHUSDT": -2}
        for symbol, qty in net.items():
            wait_for(lambda s=symbol, q=qty: _net(engine, s) == q, 5, 0.05, f"{symbol} held")
        assert _titan(engine, "halt", "--reason", "drill").returncode == 0
        result = _titan(engine, "flatten", "--reason", "drill")
        assert result.returncode == 0, result.stderr
        paper = json.loads(result.stdout)["venues"]["paper"]
        assert paper["canceled"] == [client_order_id("fl-rest")]
        assert {s: (c["side"], c["quantity"]) for s, c in paper["closing"].items()} == {
            "BTCUSDT": ("sell", 0.3), "ETHUSDT": ("buy", 2)}
        for symbol in net:
            wait_for(lambda s=symbol: _net(engine, s) == 0, 5, 0.05, f"{symbol} flat while halted")
        closed = wait_for(lambda: [e["data"] for e in read_stream(engine.nats_url, subjects.TRADE_CLOSED)
                                   if e["data"]["close_reason"] == "flatten"], 10, 0.2, "the trades closed")
        assert sorted(c["symbol"] for c in closed) == ["BTCUSDT", "ETHUSDT"]
        with engine.client() as client:
            assert client.prepare("fl-3", "BTCUSDT", "buy", 0.1)["code"] == "HALTED", "still halted"
    finally:
        engine.stop()


def test_flatten_over_nats_closes_an_exchange_position_and_its_bracket(tmp_path: Path) -> None:
    venue = Venue(tmp_path, "bybit-linear").start()
    engine, fake = venue.engine, venue.fake
    try:
        with engine.client() as client:
            assert client.prepare("fn-1", "BTCUSDT", "buy", 0.01, stop_loss=50000.0,
                                  take_profits=[70000.0])["type"] == "PREPARED"
            assert client.confirm("fn-1")["type"] == "ACCEPTED"
        wait_for(lambda: venue.detail()["live_orders"] == 2, 10, 0.05, "the stop and the take-profit resting")
        body = {"scope": "symbol:BTCUSDT", "reason": "drill", "operator": "ops"}
        payload, headers = signed(subjects.CMD_FLATTEN, body, engine.operator_secret)
        reply = command(engine.nats_url, subjects.CMD_FLATTEN, payload, headers)
        ex = reply["venues"]["ex"]
        assert len(ex["canceled"]) == 2 and ex["closing"]["BTCUSDT"]["side"] == "sell", reply
        wait_for(lambda: fake.position("BTCUSDT") == 0 and venue.detail()["live_orders"] == 0, 10, 0.05,
                 "flat at the exchange, no exit left")
        wait_for(lambda: engine.actor("position:BTCUSDT")["detail"]["net"].get("ex") == 0, 10, 0.05,
                 "flat in the engine")
    finally:
        venue.stop()
