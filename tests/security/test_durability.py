"""Nothing acknowledged is lost: what the engine acts on or answers from is
synced first (one sync per batch), and a SIGKILL between the write and the
side effect loses nothing.

The engine runs with `TITAN_DURABILITY_TRACE`: every store write, WAL sync
and side effect (an order sent to the exchange, an answer written to a
client, a halt acknowledged) is appended, in order, to one file by every
process. For each side effect, every earlier write of the store it acts on
must have been synced before it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.test_venues import Venue
from tests.support.engine import RunningEngine, wait_for

#: Which store each side effect acts on or answers from.
STORE_OF = {"venue_send": "/venues/ex", "client_write": "/gateway", "halt_ack": "/risk"}


def _unsynced_before_effects(events: list[dict]) -> list[str]:
    """Side effects preceded by a write of their store that no sync covered."""
    dirty: dict[str, dict] = {}  # store path -> the first write since its last sync
    problems = []
    for event in events:
        if event["kind"] == "write":
            dirty.setdefault(event["store"], event)
        elif event["kind"] == "sync":
            dirty.pop(event["store"], None)
        elif event["kind"] in STORE_OF:
            suffix = STORE_OF[event["kind"]]
            for store, write in dirty.items():
                if store.endswith(suffix):
                    problems.append(f"{event['kind']} {event} after the unsynced write {write['keys']}")
    return problems


def test_every_send_answer_and_halt_acknowledgement_follows_the_sync_of_its_write(tmp_path: Path) -> None:
    trace = tmp_path / "durability.trace"
    venue = Venue(tmp_path, "bybit-linear")
    venue.engine.env["TITAN_DURABILITY_TRACE"] = str(trace)
    venue.start()
    engine = venue.engine
    try:
        with engine.client(timeout=10) as client:
            for i in range(5):
                assert client.prepare(f"d-{i}", "BTCUSDT", "buy", 0.001, "limit", price=10000.0)["type"] == \
                    "PREPARED"
            waiting = [client.send({"type": "CONFIRM", "signal_id": f"d-{i}"}) for i in range(5)]
            assert all(client.wait(r, 10)["type"] == "ACCEPTED" for r in waiting)
            engine.control({"cmd": "trading_state", "mode": "HALTED", "scope": "symbol:ETHUSDT",
                            "reason": "durability", "operator": "t"})
            assert client.confirm("d-0")["duplicate"] is True
    finally:
        venue.stop()
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    kinds = {e["kind"] for e in events}
    assert {"write", "sync", "venue_send", "client_write", "halt_ack"} <= kinds, kinds
    sends = [e["coid"] for e in events if e["kind"] == "venue_send"]
    assert len(sends) == 5
    assert _unsynced_before_effects(events) == []
    # Group commit: fewer syncs of the gateway's store than answers written.
    gateway_syncs = sum(1 for e in events if e["kind"] == "sync" and e["store"].endswith("/gateway"))
    assert gateway_syncs <= sum(1 for e in events if e["kind"] == "client_write")


def test_the_trace_check_finds_an_unsynced_write() -> None:
    events = [{"kind": "write", "store": "/d/gateway", "keys": ["reply:CONFIRM:x"]},
              {"kind": "client_write", "conn": 1}]
    assert _unsynced_before_effects(events)
    assert not _unsynced_before_effects([*events[:1], {"kind": "sync", "store": "/d/gateway"}, events[1]])


def test_a_halt_killed_before_its_acknowledgement_is_still_in_force(engine: RunningEngine) -> None:
    before = engine.cells()["risk"]
    engine.control({"cmd": "fault", "role": "risk", "at": "risk.before_ack"})
    with pytest.raises(Exception):  # noqa: B017 - the acknowledgement never comes
        engine.control({"cmd": "trading_state", "mode": "HALTED", "scope": "global", "reason": "kill",
                        "operator": "t"}, timeout=3)
    wait_for(lambda: engine.cells().get("risk") not in (None, before), 10, 0.05, "the risk guard restarted")
    engine.wait_serving()
    assert engine.actor("risk")["detail"]["states"] == {"global": "HALTED"}
    with engine.client() as client:
        reply = wait_for(lambda: (r := client.prepare(f"after-kill-{time.monotonic_ns()}", "BTCUSDT", "buy",
                                                      0.01)).get("code") not in ("BUSY", "INTERNAL") and r,
                         10, 0.1, "an answer")
        assert reply["code"] == "HALTED"
