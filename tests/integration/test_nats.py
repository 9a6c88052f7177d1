"""The NATS side of the engine, through a real nats-server, as any NATS
client (written from shared/spec/nats-subjects.md) sees it."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from tests.support.engine import RunningEngine, titan_cmd, wait_for
from tests.support.nats import command, read_stream, signed
from titan_actors.wire import subjects
from titan_actors.wire.commands import sign_command


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = RunningEngine(tmp_path_factory.mktemp("nats"))
    running.start()
    try:
        yield running
    finally:
        running.stop()
        assert running.leftovers() == []


def url(engine: RunningEngine) -> str:
    return engine.nats_url


def _secret_for(engine: RunningEngine, subject: str) -> bytes:
    return engine.operator_secret if subject.startswith(subjects.OPERATOR_PREFIX) else engine.secret


def send(engine: RunningEngine, subject: str, body: dict, **kwargs) -> dict:
    payload, headers = signed(subject, body, _secret_for(engine, subject), **kwargs)
    return command(url(engine), subject, payload, headers)


def _settled(engine: RunningEngine) -> bool:
    """Every outbox empty: producers' and the bridge's."""
    status = engine.status()
    return all(a["detail"].get("outbox_depth", 0) == 0 for a in status["actors"])


# --- commands ------------------------------------------------------------------------


VALID = {
    subjects.CMD_PLACE: {"signal_id": "nv-place", "symbol": "BTCUSDT", "side": "buy", "quantity": 0.01,
                         "order_type": "market"},
    subjects.CMD_CANCEL: {"signal_id": "nv-never"},
    subjects.CMD_HALT: {"mode": "REDUCING", "reason": "check", "operator": "t", "scope": "symbol:ETHUSDT"},
    subjects.CMD_RESUME: {"reason": "check", "operator": "t", "scope": "symbol:ETHUSDT"},
    subjects.CMD_STATUS: {},
}


@pytest.mark.parametrize("subject", list(VALID))
def test_an_unsigned_badly_signed_or_stale_command_is_refused_and_changes_nothing(
    shared: RunningEngine, subject: str
) -> None:
    body = {**VALID[subject], "signal_id": f"refused-{subject[-12:]}"} if "signal_id" in VALID[subject] \
        else VALID[subject]
    payload, headers = signed(subject, body, _secret_for(shared, subject))
    assert command(url(shared), subject, payload, None) == {"error": "BAD_SIGNATURE"}
    wrong = {"Titan-Signature": "ab" * 32}
    assert command(url(shared), subject, payload, wrong) == {"error": "BAD_SIGNATURE"}
    assert command(url(shared), subject, payload + b" ", headers) == {"error": "BAD_SIGNATURE"}
    stale = send(shared, subject, body, ts=time.time_ns() // 1_000_000 - 60_000)
    assert stale == {"error": "STALE"}
    # Nothing happened: no order, no state change.
    with shared.client() as client:
        assert client.ping()["trading_state"] == "ACTIVE"
    assert shared.actor("risk")["detail"]["states"] == {}
    assert shared.venue()["staged"] == 0


@pytest.mark.parametrize("subject", [subjects.CMD_HALT, subjects.CMD_RESUME, subjects.CMD_STATUS])
def test_operator_commands_use_the_operator_secret(shared: RunningEngine, subject: str) -> None:
    payload, headers = signed(subject, VALID[subject], shared.secret)  # the FastPath secret
    assert command(url(shared), subject, payload, headers) == {"error": "BAD_SIGNATURE"}


@pytest.mark.parametrize(
    ("subject", "body", "reason"),
    [
        (subjects.CMD_PLACE, {"signal_id": "bad-1", "symbol": "BTCUSDT", "side": "buy", "quantity": -1,
                              "order_type": "market"}, "quantity"),
        (subjects.CMD_PLACE, {"symbol": "BTCUSDT", "side": "buy", "quantity": 1, "order_type": "market"},
         "signal_id"),
        (subjects.CMD_CANCEL, {}, "signal_id"),
        (subjects.CMD_HALT, {"mode": "STOP", "reason": "x", "operator": "y"}, "mode"),
        (subjects.CMD_HALT, {"mode": "HALTED", "operator": "y"}, "reason"),
        (subjects.CMD_HALT, {"mode": "HALTED", "reason": "x", "operator": "y", "scope": "desk:1"}, "scope"),
        (subjects.CMD_RESUME, {"reason": "x"}, "operator"),
    ],
)
def test_a_malformed_command_is_invalid_naming_the_field(
    shared: RunningEngine, subject: str, body: dict, reason: str
) -> None:
    reply = send(shared, subject, body)
    assert reply["error"] == "INVALID"
    assert reply["reason"].startswith(f"{reason}:")


def test_a_body_that_is_not_json_or_has_no_ts_is_invalid(shared: RunningEngine) -> None:
    for raw in (b"not json", b"[1,2]", json.dumps({"signal_id": "x", "nonce": "n" * 12}).encode()):
        headers = {"Titan-Signature": sign_command(shared.secret, subjects.CMD_CANCEL, raw)}
        assert command(url(shared), subjects.CMD_CANCEL, raw, headers)["error"] == "INVALID"


def test_place_prepares_and_confirms_in_one_step_once_and_cancel_cancels(shared: RunningEngine) -> None:
    accepted = send(shared, subjects.CMD_PLACE, {"signal_id": "np-1", "symbol": "BTC/USDT:USDT",
                                                 "side": "buy", "quantity": 0.5, "order_type": "limit",
                                                 "price": 50000.0})
    assert accepted["type"] == "ACCEPTED" and accepted["exchange"] == "paper"
    again = send(shared, subjects.CMD_PLACE, {"signal_id": "np-1", "symbol": "BTCUSDT", "side": "buy",
                                              "quantity": 0.5, "order_type": "limit", "price": 50000.0})
    assert again["type"] == "ACCEPTED" and again["duplicate"] is True
    # FastPath sees the same signal: one idempotency for both front doors.
    with shared.client() as client:
        assert client.confirm("np-1")["duplicate"] is True
    assert send(shared, subjects.CMD_CANCEL, {"signal_id": "np-1"})["type"] == "CANCELED"
    unknown = send(shared, subjects.CMD_CANCEL, {"signal_id": "np-nothing"})
    assert (unknown["type"], unknown["code"]) == ("REJECTED", "UNKNOWN_SIGNAL")


def test_halt_takes_effect_before_its_reply_and_resume_lifts_it(shared: RunningEngine) -> None:
    halted = send(shared, subjects.CMD_HALT, {"mode": "HALTED", "reason": "drill", "operator": "ops",
                                              "scope": "symbol:BTCUSDT"})
    assert halted["trading_state"] == "HALTED" and halted["scope"] == "symbol:BTCUSDT"
    placed = send(shared, subjects.CMD_PLACE, {"signal_id": "nh-1", "symbol": "BTCUSDT", "side": "buy",
                                               "quantity": 0.01, "order_type": "market"})
    assert (placed["type"], placed["code"]) == ("REJECTED", "HALTED")
    other = send(shared, subjects.CMD_PLACE, {"signal_id": "nh-2", "symbol": "ETHUSDT", "side": "buy",
                                              "quantity": 0.01, "order_type": "market"})
    assert other["type"] == "ACCEPTED", "a symbol halt does not touch other symbols"
    resumed = send(shared, subjects.CMD_RESUME,
                   {"reason": "done", "operator": "ops", "scope": "symbol:BTCUSDT"})
    assert resumed["trading_state"] == "ACTIVE" and resumed["states"] == {}


def test_status_lists_the_trading_state_actors_venues_and_positions(shared: RunningEngine) -> None:
    status = send(shared, subjects.CMD_STATUS, {})
    assert status["trading_state"] == "ACTIVE"
    roles = {a["role"] for a in status["actors"]}
    assert {"root", "gateway", "risk", "nats", "venue:paper", "position:BTCUSDT"} <= roles
    assert all(a["pid"] > 0 and "restarts" in a for a in status["actors"])
    assert [v["venue"] for v in status["venues"]] == ["paper"]
    assert {p["symbol"] for p in status["positions"]} >= {"BTCUSDT", "ETHUSDT"}


def test_a_command_while_its_actor_is_down_gets_an_error_reply_not_silence(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path).start()
    try:
        engine.pause("risk")
        try:
            started = time.monotonic()
            reply = send(engine, subjects.CMD_HALT, {"mode": "HALTED", "reason": "x", "operator": "y"})
            assert reply["error"] == "UNAVAILABLE"
            assert time.monotonic() - started < 8
        finally:
            engine.resume("risk")
    finally:
        engine.stop()


# --- events --------------------------------------------------------------------------


def _by_source(events: list[dict]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = collections.defaultdict(list)
    for event in events:
        seqs[event["source"]].append(event["seq"])
    return seqs


def test_events_of_an_order_flow_arrive_on_their_subjects_with_contiguous_seq(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path).start()
    try:
        with engine.client() as client:
            client.prepare("ev-1", "BTCUSDT", "buy", 0.3)
            client.confirm("ev-1")
            client.prepare("ev-2", "ETHUSDT", "sell", 1.0, "limit", price=4000.0)
            client.confirm("ev-2")
            client.cancel("ev-2")
        send(engine, subjects.CMD_HALT, {"mode": "HALTED", "reason": "r", "operator": "o"})
        send(engine, subjects.CMD_RESUME, {"reason": "r", "operator": "o"})
        wait_for(lambda: _settled(engine), 10, 0.1, "outboxes drained")
        events = read_stream(url(engine), "titan.evt.>")
        reports = [e for e in events if e["subject"].startswith("titan.evt.execution.report.v1.")]
        assert [(e["subject"].rsplit(".", 1)[1], e["type"]) for e in reports] == [
            ("BTCUSDT", "OrderSubmitted"), ("BTCUSDT", "OrderAccepted"), ("BTCUSDT", "OrderFilled"),
            ("ETHUSDT", "OrderSubmitted"), ("ETHUSDT", "OrderAccepted"), ("ETHUSDT", "OrderCanceled"),
        ]
        assert reports[2]["data"]["last_fill"]["qty"] == 0.3 and reports[2]["symbol"] == "BTCUSDT"
        risk = [e for e in events if e["subject"] == subjects.RISK_STATE]
        assert [e["data"]["trading_state"] for e in risk] == ["HALTED", "ACTIVE"]
        assert risk[0]["data"]["operator"] == "o" and risk[0]["data"]["reason"] == "r"
        for source, seqs in _by_source(events).items():
            assert seqs == list(range(1, len(seqs) + 1)), f"{source}: {seqs}"
        for event in events:
            assert event["msg_id"] == event["event_id"] == f"{event['source']}:{event['seq']}"
            assert set(event) >= {"event_id", "type", "ts", "source", "seq", "symbol", "data"}
    finally:
        engine.stop()


def test_actor_restarts_are_reported_as_system_events(engine: RunningEngine) -> None:
    old = engine.cells()["risk"]
    engine.control({"cmd": "fault", "role": "risk", "reason": "drill"})  # a crash of the actor
    wait_for(lambda: engine.cells().get("risk") not in (None, old), 5, 0.02, "risk restarted")
    wait_for(lambda: _settled(engine), 10, 0.1, "outboxes drained")
    events = [e for e in read_stream(url(engine), subjects.SYSTEM_ACTOR) if e["data"]["role"] == "risk"]
    kinds = [(e["type"], e["data"]["reason"]) for e in events]
    assert ("ActorExited", "crashed") in kinds and ("ActorRestarted", "started") in kinds
    exited = next(e for e in events if e["type"] == "ActorExited")
    assert exited["data"]["pid"] == old[0] and exited["source"].startswith("root@")


def _flow(engine: RunningEngine, count: int, prefix: str, pause: float = 0.0) -> None:
    with engine.client(timeout=10) as client:
        for i in range(count):
            signal_id = f"{prefix}-{i}"
            while True:
                prepared = client.prepare(signal_id, "BTCUSDT", "buy", 0.01)
                if prepared["type"] == "PREPARED":
                    break
                time.sleep(0.05)  # INTERNAL while something restarts: resend
            while client.confirm(signal_id)["type"] != "ACCEPTED":
                time.sleep(0.05)
            time.sleep(pause)


def _assert_exactly_once(engine: RunningEngine, orders: int) -> None:
    wait_for(lambda: _settled(engine), 20, 0.1, "outboxes drained")
    reports = [e for e in read_stream(url(engine), "titan.evt.execution.report.v1.>")]
    ids = [e["event_id"] for e in reports]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    seqs = sorted(e["seq"] for e in reports if e["source"] == "venue:paper")
    assert seqs == list(range(1, 3 * orders + 1)), "every event of every order, once"


def test_killing_the_nats_server_during_a_flow_loses_no_event_and_stores_none_twice(
    engine: RunningEngine,
) -> None:
    flow = threading.Thread(target=_flow, args=(engine, 40, "kn", 0.01))
    flow.start()
    time.sleep(0.15)
    old = engine.status()["nats_pid"]
    os.kill(old, signal.SIGKILL)
    flow.join(60)
    assert not flow.is_alive()
    assert engine.status()["nats_pid"] != old, "titan run restarted nats-server"
    _assert_exactly_once(engine, 40)


def test_killing_the_bridge_while_events_wait_loses_none_and_stores_none_twice(engine: RunningEngine) -> None:
    nats_pid = engine.status()["nats_pid"]
    os.kill(nats_pid, signal.SIGSTOP)  # events can be stored by the bridge but not published
    try:
        _flow(engine, 10, "kb")
        wait_for(lambda: engine.actor("nats")["detail"]["outbox_depth"] >= 30, 10, 0.1, "events queued")
        old = engine.pids()["nats"]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: engine.pids().get("nats") not in (None, old), 5, 0.05, "bridge restarted")
    finally:
        os.kill(nats_pid, signal.SIGCONT)
    _assert_exactly_once(engine, 10)


# --- market data ---------------------------------------------------------------------


def test_a_burst_of_ticks_does_not_delay_a_confirm_and_the_latest_price_wins(engine: RunningEngine) -> None:
    async def flood() -> None:
        nc = await nats.connect(url(engine))
        for i in range(20_000):
            price = 61_000 + i
            await nc.publish(f"{subjects.MARKET_TICKER}.BTCUSDT", json.dumps(
                {"symbol": "BTCUSDT", "bid": price - 1, "ask": price, "last": price,
                 "ts": time.time_ns() // 1_000_000}).encode())
        await nc.flush()
        await nc.close()

    with engine.client() as client:
        baseline = []
        for i in range(20):
            client.prepare(f"tb-{i}", "ETHUSDT", "buy", 0.01)
            started = time.perf_counter()
            client.confirm(f"tb-{i}")
            baseline.append(time.perf_counter() - started)
        flooder = threading.Thread(target=lambda: asyncio.run(flood()))
        during = []
        flooder.start()
        i = 0
        while flooder.is_alive():
            client.prepare(f"tf-{i}", "ETHUSDT", "buy", 0.01)
            started = time.perf_counter()
            assert client.confirm(f"tf-{i}")["type"] == "ACCEPTED"
            during.append(time.perf_counter() - started)
            i += 1
        flooder.join()
        assert during, "the flood finished before a single CONFIRM"
        # Generous bound (tests do not assert timings tightly): no backlog of ticks
        # may stand between a CONFIRM and its answer.
        assert sorted(during)[len(during) // 2] < sorted(baseline)[len(baseline) // 2] + 0.02
        assert max(during) < 0.25
        last = wait_for(lambda: _fill_price(client), 5, 0.05, "a fill at the newest price")
    assert last == 61_000 + 19_999


def _fill_price(client) -> float | None:
    signal_id = f"tp-{time.monotonic_ns()}"
    client.prepare(signal_id, "BTCUSDT", "buy", 0.001)
    client.confirm(signal_id)
    while True:
        report = client.next_execution(3)
        if report["signal_id"] == signal_id and report["status"] == "FILLED":
            price = report["last_fill"]["price"]
            return price if price == 61_000 + 19_999 else None


# --- the subscriber tool ---------------------------------------------------------------


def test_titan_events_tail_prints_the_stream_as_json_lines(shared: RunningEngine) -> None:
    with shared.client() as client:
        client.prepare("tail-1", "BTCUSDT", "buy", 0.01)
        client.confirm("tail-1")
    wait_for(lambda: _settled(shared), 10, 0.1, "outboxes drained")
    result = subprocess.run(
        titan_cmd("events", "tail", "--config", str(shared.config), "--since", "all",
                  "--subject", "titan.evt.execution.report.v1.>", "--timeout", "2"),
        env=shared.env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    mine = [e for e in lines if e["data"]["signal_id"] == "tail-1"]
    assert [e["type"] for e in mine] == ["OrderSubmitted", "OrderAccepted", "OrderFilled"]
    assert all(e["subject"] == "titan.evt.execution.report.v1.BTCUSDT" and e["stream_seq"] > 0 for e in mine)



def test_killing_a_producer_whose_events_the_bridge_never_got_loses_none(engine: RunningEngine) -> None:
    engine.pause("nats")  # the adapter's events stay in its own outbox
    try:
        _flow(engine, 5, "kp")
        adapter = engine.pids()["venue:paper"]
        wait_for(lambda: engine.venue()["outbox_depth"] >= 15, 5, 0.05, "events waiting in the adapter")
        os.kill(adapter, signal.SIGKILL)
        wait_for(lambda: engine.pids().get("venue:paper") not in (None, adapter), 5, 0.05, "adapter back")
    finally:
        engine.resume("nats")
    _assert_exactly_once(engine, 5)
