"""Halts at the point of sending: the venue adapter checks the effective
trading state (every scope) immediately before each send, so an order
confirmed or queued before a halt, or an exit placed after a fill, does not
go out during it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.test_venues import Venue
from tests.support.engine import RunningEngine, wait_for
from titan_actors.domain.trading_state import send_gate


def _state(engine: RunningEngine, mode: str, scope: str = "global", venue: str = "paper") -> None:
    """Set a state; the adapter must know it by the time the acknowledgement
    arrives (under `isolated` it is a lane hop away from the risk guard)."""
    reply = engine.control({"cmd": "trading_state", "mode": mode, "scope": scope, "reason": "test",
                            "operator": "t"})
    assert reply["unconfirmed"] == []
    assert (engine.venue(venue)["trading_states"] or {}).get(scope, "ACTIVE") == mode


def test_a_halt_is_acknowledged_once_the_adapters_apply_it(engine: RunningEngine) -> None:
    for _ in range(5):  # a race lost once in a few tries without the wait
        _state(engine, "HALTED", "venue:paper")
        _state(engine, "ACTIVE", "venue:paper")


def test_a_halt_names_the_adapter_that_did_not_apply_it_in_time(engine: RunningEngine) -> None:
    engine.pause("venue:paper")
    try:
        reply = engine.control({"cmd": "trading_state", "mode": "HALTED", "scope": "global", "reason": "test",
                                "operator": "t"})
        assert reply["trading_state"] == "HALTED"
        assert reply["unconfirmed"] == ["venue:paper"]
    finally:
        engine.resume("venue:paper")
    wait_for(lambda: (engine.venue()["trading_states"] or {}).get("global") == "HALTED", 5, 0.05,
             "the adapter applies the halt once it runs again")


@pytest.mark.parametrize(("states", "kind", "verdict", "reduce_only"), [
    ({}, "entry", "send", False),
    ({"global": "HALTED"}, "entry", "refuse", False),
    ({"venue:paper": "HALTED"}, "exit", "hold", False),
    ({"symbol:BTCUSDT": "HALTED"}, "entry", "refuse", False),
    ({"symbol:ETHUSDT": "HALTED"}, "entry", "send", False),
    ({"global": "REDUCING"}, "entry", "send", True),
    ({"global": "REDUCING"}, "spot buy", "refuse", False),
    ({"global": "REDUCING"}, "spot sell", "send", False),
    ({"global": "REDUCING"}, "exit", "send", True),
    (None, "entry", "busy", False),
    (None, "exit", "hold", False),
])
def test_the_gate_at_sending(states: dict | None, kind: str, verdict: str, reduce_only: bool) -> None:
    gate = send_gate(states, venue="paper", symbol="BTCUSDT", side="sell" if "sell" in kind else "buy",
                     reduce_only=kind == "exit", exit_leg=kind == "exit", spot=kind.startswith("spot"))
    assert (gate.verdict, gate.reduce_only) == (verdict, reduce_only)
    assert bool(gate.reason) == (verdict != "send")


def test_exits_of_a_fill_during_a_halt_are_held_and_sent_on_resume(engine: RunningEngine) -> None:
    with engine.client() as client:
        assert client.prepare("held-1", "BTCUSDT", "buy", 1, "limit", price=59000.0, stop_loss=55000.0,
                              take_profits=[65000.0, 66000.0])["type"] == "PREPARED"
        assert client.confirm("held-1")["type"] == "ACCEPTED"
        _state(engine, "HALTED", "symbol:BTCUSDT")
        engine.control({"cmd": "price", "symbol": "BTCUSDT", "bid": 58900, "ask": 58950, "last": 58925})
        detail = wait_for(lambda: (d := engine.venue()).get("held_exits") and len(d["held_exits"]) == 3 and d,
                          10, 0.05, "three exits held")
        assert detail["positions"]["BTCUSDT"]["qty"] == 1
        assert detail["open_orders"] == 0, "no exit reached the venue during the halt"
        _state(engine, "ACTIVE", "symbol:BTCUSDT")
        detail = wait_for(lambda: (d := engine.venue())["open_orders"] == 3 and d, 10, 0.05, "exits sent")
        assert detail["held_exits"] == {}


def test_an_order_confirmed_before_reducing_goes_out_reduce_only(engine: RunningEngine) -> None:
    with engine.client() as client:
        assert client.prepare("red-1", "BTCUSDT", "sell", 1)["type"] == "PREPARED"  # would open a short
        _state(engine, "REDUCING")
        refused = client.confirm("red-1")
        # Sent as reduce-only, the venue refuses what would not reduce: no short was opened.
        assert (refused["type"], refused["code"]) == ("REJECTED", "VENUE_REJECTED")
        assert "reduce" in refused["reason"]
        _state(engine, "ACTIVE")
    assert engine.venue()["positions"].get("BTCUSDT", {"qty": 0})["qty"] == 0


def test_orders_queued_for_the_exchange_when_a_halt_comes_are_never_sent(tmp_path: Path) -> None:
    venue = Venue(tmp_path, "bybit-linear", "rate_limit_per_s = 0.5\nmax_queue_wait_ms = 60000",
                  poll_ms=100000).start()
    engine = venue.engine
    try:
        with engine.client(timeout=30) as client:
            signals = [f"q-{i}" for i in range(20)]
            for signal_id in signals:
                reply = client.prepare(signal_id, "BTCUSDT", "buy", 0.001, "limit", price=10000.0)
                assert reply["type"] == \
                    "PREPARED", reply
            waiting = {client.send({"type": "CONFIRM", "signal_id": s}): s for s in signals}
            time.sleep(0.3)  # the first few reach the exchange, the rest wait for tokens
            _state(engine, "HALTED", venue="ex")
            replies = {waiting[r]: client.wait(r, 40) for r in waiting}
            for signal_id, reply in replies.items():
                if reply.get("code") == "INTERNAL":  # queued past the gateway's timeout: ask again
                    replies[signal_id] = wait_for(
                        lambda s=signal_id: (r := client.confirm(s)).get("code") != "INTERNAL" and r,
                        40, 0.5, f"the outcome of {signal_id}")
        accepted = [s for s, r in replies.items() if r["type"] == "ACCEPTED"]
        halted = [s for s, r in replies.items() if r.get("code") == "HALTED"]
        assert halted and len(accepted) + len(halted) == 20, replies
        assert len(venue.fake.orders) == len(accepted), "nothing was sent after the halt"
        assert venue.detail()["halted_at_send"] == len(halted)
    finally:
        venue.stop()


def test_an_exchange_venue_holds_exits_during_a_halt_and_sends_them_on_resume(tmp_path: Path) -> None:
    venue = Venue(tmp_path, "bybit-linear").start()
    engine = venue.engine
    try:
        with engine.client(timeout=10) as client:
            assert client.prepare("xh-1", "BTCUSDT", "buy", 0.01, "limit", price=50000.0,
                                  take_profits=[55000.0])["type"] == "PREPARED"
            assert client.confirm("xh-1")["type"] == "ACCEPTED"
        (entry_id,) = list(venue.fake.orders)
        _state(engine, "HALTED", "symbol:BTCUSDT", "ex")
        venue.fake.fill(entry_id, 0.01)
        wait_for(lambda: len(venue.detail().get("held_exits", {})) == 1, 10, 0.05, "the exit held")
        assert list(venue.fake.orders) == [entry_id], "no exit reached the exchange during the halt"
        _state(engine, "ACTIVE", "symbol:BTCUSDT", "ex")
        wait_for(lambda: len(venue.fake.orders) == 2, 10, 0.05, "the exit sent")
        assert venue.detail()["held_exits"] == {}
    finally:
        venue.stop()
