"""Ready means ready: the FastPath socket and NATS commands are served only
once the engine can take an order, and a part restarting answers BUSY."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.engine import RunningEngine, wait_for
from tests.support.nats import command, signed
from titan_actors.wire import subjects


def _place(engine: RunningEngine, signal_id: str) -> dict:
    payload, headers = signed(subjects.CMD_PLACE, {"signal_id": signal_id, "symbol": "BTCUSDT", "side": "buy",
                                                   "quantity": 0.01, "order_type": "market"}, engine.secret)
    return command(engine.nats_url, subjects.CMD_PLACE, payload, headers)


def test_the_first_order_after_titan_run_says_it_is_running_succeeds(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path).start()  # returns once titan run announced itself
    try:
        with engine.client() as client:
            assert client.prepare("first-1", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
            assert client.confirm("first-1")["type"] == "ACCEPTED"
        assert _place(engine, "first-2")["type"] == "ACCEPTED"
        assert engine.actor("gateway")["detail"]["serving"] is True
    finally:
        engine.stop()
    assert engine.leftovers() == []


def test_a_restarted_gateway_serves_nothing_until_the_engine_can_take_an_order(engine: RunningEngine) -> None:
    before = engine.cells()["gateway"]
    engine.pause("risk")  # it cannot say the engine is ready
    try:
        engine.kill("gateway")
        wait_for(lambda: engine.cells().get("gateway") not in (None, before), 10, 0.05, "a new gateway")
        assert engine.actor("gateway")["detail"]["serving"] is False
        with pytest.raises(OSError):
            engine.client()  # nobody listens on the socket
        busy = _place(engine, "rd-1")
        assert (busy["type"], busy["code"], busy["signal_id"]) == ("REJECTED", "BUSY", "rd-1")
    finally:
        engine.resume("risk")
    wait_for(lambda: engine.actor("gateway")["detail"]["serving"], 10, 0.05, "the gateway serving")
    with engine.client() as client:
        assert client.prepare("rd-2", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
        assert client.confirm("rd-2")["type"] == "ACCEPTED"
    # BUSY was not final: the same command now places the order, once.
    assert _place(engine, "rd-1")["type"] == "ACCEPTED"
    assert engine.venue()["orders_placed"] == 2
