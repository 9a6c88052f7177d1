"""Reconciliation of the shadow state with the venue, through a running engine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.engine import FAST_SUPERVISION, RunningEngine, titan_cmd, wait_for
from tests.support.nats import read_stream
from titan_actors.wire import subjects

FAST = FAST_SUPERVISION + "[positions]\nreconcile_interval_s = 0.3\n"


def _drift(engine: RunningEngine, kind: str) -> list[dict]:
    return [e for e in read_stream(engine.nats_url, subjects.drift("BTCUSDT")) if e["type"] == kind]


def _paper(engine: RunningEngine) -> dict:
    return engine.actor("position:BTCUSDT")["detail"]["venues"]["paper"]


def test_a_position_changed_behind_the_engines_back_is_reported_and_adopted(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST).start()
    try:
        with engine.client() as client:
            client.prepare("d-1", "BTCUSDT", "buy", 1)
            client.confirm("d-1")
        wait_for(lambda: _paper(engine)["qty"] == 1, 5, 0.05, "the fill")
        engine.control({"cmd": "paper_adjust", "symbol": "BTCUSDT", "qty": 1.5, "avg_price": 61000})
        wait_for(lambda: _paper(engine)["qty"] == 1.5, 5, 0.05, "the venue's figures adopted")
        assert _paper(engine)["avg_entry"] == 61000
        drift = wait_for(lambda: _drift(engine, "PositionDrift"), 10, 0.2, "the drift event")
        data = drift[0]["data"]
        assert (data["shadow_qty"], data["venue_qty"], data["policy"]) == (1, 1.5, "adopt")
        assert engine.actor("risk")["detail"]["states"] == {}, "adopt does not halt"
    finally:
        engine.stop()


def test_with_the_halt_policy_drift_halts_the_symbol_until_an_operator_resumes(tmp_path: Path) -> None:
    config = FAST + "[venues.paper]\nexchange = 'paper'\nreconcile_policy = 'halt'\n"
    engine = RunningEngine(tmp_path, config).start()
    try:
        engine.control({"cmd": "paper_adjust", "symbol": "BTCUSDT", "qty": -2, "avg_price": 60000})
        wait_for(lambda: engine.actor("risk")["detail"]["states"].get("symbol:BTCUSDT") == "HALTED", 5, 0.05,
                 "the symbol halted")
        with engine.client() as client:
            refused = client.prepare("h-1", "BTCUSDT", "buy", 0.1)
            assert refused["code"] == "HALTED" and "symbol:BTCUSDT" in refused["reason"]
            assert client.prepare("h-2", "ETHUSDT", "buy", 0.1)["type"] == "PREPARED"
        assert _paper(engine)["qty"] == 0, "halt keeps our figures; an operator decides"
        (drift,) = wait_for(lambda: _drift(engine, "PositionDrift")[:1], 10, 0.2, "the drift event")
        assert drift["data"]["policy"] == "halt"
    finally:
        engine.stop()


def test_an_order_at_the_venue_unknown_to_the_shadow_state_is_adopted_at_the_next_reconciliation(
    tmp_path: Path,
) -> None:
    engine = RunningEngine(tmp_path, FAST).start()
    try:
        spec = {"client_order_id": "outside-1", "symbol": "BTCUSDT", "side": "buy", "quantity": 0.4,
                "order_type": "limit", "price": 50000.0, "trigger_price": None, "time_in_force": "GTC",
                "reduce_only": False}
        engine.control({"cmd": "paper_place", "spec": spec})
        wait_for(lambda: _paper(engine)["open_orders"] == 1, 5, 0.05, "the order adopted")
        assert _paper(engine)["open_buy"] == pytest.approx(0.4)
        (adopted,) = wait_for(lambda: _drift(engine, "OrderAdopted")[:1], 10, 0.2, "the OrderAdopted event")
        assert adopted["data"]["client_order_id"] == "outside-1"
        # The risk guard counts it: it is part of the exposure now.
        wait_for(lambda: engine.actor("risk")["detail"]["snapshots"].get("BTCUSDT", 0) > 0, 5, 0.05,
                 "the snapshot")
        result = subprocess.run(titan_cmd("positions", "--config", str(engine.config)), env=engine.env,
                                capture_output=True, text=True, timeout=60)
        assert "ok (" in result.stdout and "corrections" in result.stdout
        listed = subprocess.run(titan_cmd("positions", "--json", "--config", str(engine.config)),
                                env=engine.env, capture_output=True, text=True, timeout=60)
        as_json = json.loads(listed.stdout)
        assert all(row["reconciled"]["result"] == "ok" for row in as_json)
    finally:
        engine.stop()


def test_a_position_found_flat_at_the_venue_has_its_exits_canceled(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST).start()
    try:
        with engine.client() as client:
            assert client.prepare("fx-1", "BTCUSDT", "buy", 1, stop_loss=55000.0,
                                  take_profits=[65000.0])["type"] == "PREPARED"
            assert client.confirm("fx-1")["type"] == "ACCEPTED"
        wait_for(lambda: engine.venue()["open_orders"] == 2, 5, 0.05, "the stop and the take-profit resting")
        # Someone closes the position on the exchange's site.
        engine.control({"cmd": "paper_adjust", "symbol": "BTCUSDT", "qty": 0, "avg_price": 0})
        wait_for(lambda: _paper(engine)["qty"] == 0, 5, 0.05, "the flat position adopted")
        wait_for(lambda: engine.venue()["open_orders"] == 0, 5, 0.05, "its exits canceled")
        assert engine.venue()["live_orders"] == 0
    finally:
        engine.stop()
