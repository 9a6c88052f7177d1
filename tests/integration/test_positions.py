"""Position actors in a running engine: every fill applied once, across kills."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.support.engine import RunningEngine, titan_cmd, wait_for
from tests.support.nats import read_stream
from titan_actors.runtime.store import Store
from titan_actors.wire import subjects


def _settled(engine: RunningEngine) -> bool:
    status = engine.status()
    return not status["missing"] and all(
        a["detail"].get("outbox_depth", 0) == 0 and a["detail"].get("deliveries_depth", 0) == 0
        for a in status["actors"])


def _trade(engine: RunningEngine, count: int, prefix: str) -> None:
    with engine.client(timeout=10) as client:
        for i in range(count):
            side, qty = ("buy", 0.3) if i % 3 else ("sell", 0.2)
            signal_id = f"{prefix}-{i}"
            while client.prepare(signal_id, "BTCUSDT", side, qty)["type"] != "PREPARED":
                time.sleep(0.05)
            while client.confirm(signal_id)["type"] != "ACCEPTED":
                time.sleep(0.05)
            time.sleep(0.02)  # a stream, so that the kills land in the middle of it


def test_a_position_actor_killed_during_a_stream_of_fills_applies_each_fill_exactly_once(
    engine: RunningEngine,
) -> None:
    flow = threading.Thread(target=_trade, args=(engine, 30, "pk"))
    flow.start()
    kills = 0
    while flow.is_alive() and kills < 3:
        time.sleep(0.15)
        if "position:BTCUSDT" in engine.pids():
            engine.kill("position:BTCUSDT")  # the actor alone, whichever worker it shares
            kills += 1
    flow.join(60)
    assert kills >= 2
    wait_for(lambda: _settled(engine), 20, 0.1, "every delivery acknowledged")
    venue = engine.venue()["positions"]["BTCUSDT"]
    position = engine.actor("position:BTCUSDT")["detail"]
    paper = position["venues"]["paper"]
    assert paper["fills"] == 30, "each of the 30 fills once"
    assert paper["qty"] == venue["qty"] == 4  # 20 * 0.3 - 10 * 0.2, exactly
    assert paper["avg_entry"] == pytest.approx(venue["avg_price"])
    assert position["boots"] >= 3, "it was really killed and restarted"


def test_the_orders_a_position_actor_accounted_survive_its_kill_and_every_reservation_is_released(
    engine: RunningEngine,
) -> None:
    _trade(engine, 70, "ac")  # more orders than a snapshot after a change names
    wait_for(lambda: _settled(engine), 20, 0.1, "every delivery acknowledged")
    before = engine.actor("position:BTCUSDT")["detail"]
    assert before["accounted"] == 70
    engine.kill("position:BTCUSDT")
    wait_for(lambda: engine.actor("position:BTCUSDT")["detail"]["boots"] > before["boots"], 20, 0.1,
             "the position actor restarted")
    after = engine.actor("position:BTCUSDT")["detail"]
    assert (after["accounted"], after["fills"]) == (70, 70)
    # The restarted actor reconciles at once, which counts one version (and only that).
    assert after["version"] in (before["version"], before["version"] + 1)
    wait_for(lambda: engine.actor("risk")["detail"]["reserved"] == 0, 10, 0.1, "no reservation left")


def test_a_store_that_kept_the_accounted_orders_in_its_state_is_carried_over(tmp_path: Path) -> None:
    store_dir = tmp_path / "data" / "positions" / "BTCUSDT"
    legacy = Store(str(store_dir))
    legacy.put(b"state", orjson.dumps({"version": 3, "positions": {}, "open": {}, "day": "2026-01-01",
                                       "accounted": [["old-1", "FILLED"], ["old-2", "CANCELED"]]}))
    legacy.close()
    engine = RunningEngine(tmp_path).start()
    try:
        detail = engine.actor("position:BTCUSDT")["detail"]
        assert detail["accounted"] == 2 and detail["version"] >= 3, "the old state, reconciled since"
    finally:
        engine.stop()
    store = Store(str(store_dir))
    try:
        assert store.get(b"acc:old-1") is not None and store.get(b"acc:old-2") is not None
        assert "accounted" not in orjson.loads(store.get(b"state") or b"{}")
    finally:
        store.close()


def test_truth_and_trade_closed_events_report_a_round_trip(engine: RunningEngine) -> None:
    with engine.client() as client:
        client.prepare("rt-1", "ETHUSDT", "buy", 2, strategy_id="mean-rev", phase=1)
        client.confirm("rt-1")
        engine.control({"cmd": "price", "symbol": "ETHUSDT", "bid": 3100, "ask": 3101, "last": 3100.5})
        client.prepare("rt-2", "ETHUSDT", "sell", 2, strategy_id="mean-rev", phase=2)
        client.confirm("rt-2")
    wait_for(lambda: _settled(engine), 10, 0.1, "outboxes drained")
    url = engine.nats_url
    truth = [e for e in read_stream(url, subjects.truth("ETHUSDT"))]
    # One truth event per order's updates handled together (the position after
    # them): the fills move it from 0 to 2 and back; an order that filled in
    # the batch it was submitted in shows no state of its own before the fill.
    by_fills = {e["data"]["fills"]: e["data"]["qty"] for e in truth}
    assert {f: q for f, q in by_fills.items() if f} == {1: 2, 2: 0} and by_fills.get(0, 0) == 0
    versions = [e["data"]["version"] for e in truth]
    assert versions == sorted(set(versions)), "each truth event a newer position"
    mine = [e for e in read_stream(url, ">") if e["source"] == "position:ETHUSDT"]
    assert sorted(e["seq"] for e in mine) == list(range(1, len(mine) + 1)), "seq per source, all subjects"
    assert truth[-1]["source"] == "position:ETHUSDT"
    (closed,) = read_stream(url, subjects.TRADE_CLOSED)
    data = closed["data"]
    assert (data["side"], data["size"], data["entry_price"], data["exit_price"]) == ("long", 2, 3000, 3100)
    assert data["realised_pnl"] == pytest.approx(200) and data["fees"] > 0
    assert data["strategy_id"] == "mean-rev" and data["duration_ms"] >= 0 and data["venue"] == "paper"


def test_titan_positions_prints_every_position_with_its_pnl(engine: RunningEngine) -> None:
    with engine.client() as client:
        client.prepare("tp-1", "BTCUSDT", "buy", 0.5)
        client.confirm("tp-1")
    wait_for(lambda: engine.actor("position:BTCUSDT")["detail"]["fills"] == 1, 5, 0.05, "the fill")
    result = subprocess.run(titan_cmd("positions", "--json", "--config", str(engine.config)), env=engine.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {(r["symbol"], r["venue"]): r for r in json.loads(result.stdout)}
    assert rows[("BTCUSDT", "paper")]["qty"] == 0.5 and rows[("BTCUSDT", "paper")]["avg_entry"] == 60000.0
    text = subprocess.run(titan_cmd("positions", "--config", str(engine.config)), env=engine.env,
                          capture_output=True, text=True, timeout=60)
    assert "BTCUSDT" in text.stdout and "REALISED" in text.stdout
