"""FastPath through a real socket into a real engine: every reply type and
every REJECTED code of shared/spec/fastpath-ipc.md."""

from __future__ import annotations

import os
import signal
import socket
import stat
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import FAST_SUPERVISION, REAL_VENUE_LIMITS, RunningEngine, wait_for
from titan_actors.client import ConnectionClosed, FastPathClient
from titan_actors.runtime.store import Store
from titan_actors.wire.fastpath import encode_frame, encode_message, sign


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    """One engine for the tests that only send requests (each uses its own signals)."""
    running = RunningEngine(tmp_path_factory.mktemp("fastpath")).start()
    try:
        yield running
    finally:
        running.stop()
        assert running.leftovers() == []


def sig() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def _now() -> int:
    return time.time_ns() // 1_000_000


def _closed(client: FastPathClient) -> bool:
    assert client.sock is not None
    client.sock.settimeout(2)
    try:
        return client.sock.recv(1) == b""
    except ConnectionResetError:
        return True


# --- replies ---------------------------------------------------------------------------


def test_ping_answers_pong_with_the_engine_clock_and_the_trading_state(shared: RunningEngine) -> None:
    with shared.client() as client:
        before = _now()
        pong = client.ping()
    assert pong["type"] == "PONG"
    assert before - 1000 <= pong["engine_ts"] <= _now() + 1000
    assert pong["trading_state"] == "ACTIVE"


def test_prepare_and_confirm_give_prepared_accepted_and_executions_to_the_confirming_connection(
    shared: RunningEngine,
) -> None:
    s = sig()
    with shared.client() as client, shared.client() as other:
        prepared = client.prepare(s, "BTC/USDT:USDT", "buy", 0.25, strategy_id="trend", phase=2)
        assert prepared["type"] == "PREPARED" and prepared["signal_id"] == s
        order = prepared["order"]
        assert order["symbol"] == "BTCUSDT" and order["side"] == "buy" and order["quantity"] == 0.25
        assert order["client_order_id"].startswith("tt") and len(order["client_order_id"]) == 32
        assert prepared["expires_at"] > _now()
        accepted = other.confirm(s)
        assert accepted == {**accepted, "type": "ACCEPTED", "client_order_id": order["client_order_id"],
                            "exchange": "paper"}
        statuses = [other.next_execution(3) for _ in range(3)]
        assert [e["status"] for e in statuses] == ["SUBMITTED", "ACCEPTED", "FILLED"]
        filled = statuses[-1]
        assert filled["filled_qty"] == 0.25 and filled["avg_price"] == 60000.0
        assert filled["last_fill"]["qty"] == 0.25 and filled["client_order_id"] == order["client_order_id"]
        with pytest.raises(TimeoutError):
            client.next_execution(0.3)  # only the confirming connection gets them


def test_a_repeated_request_returns_the_first_final_reply_marked_duplicate(shared: RunningEngine) -> None:
    s = sig()
    with shared.client() as client:
        first = client.prepare(s, "BTCUSDT", "buy", 0.1)
        again = client.prepare(s, "BTCUSDT", "sell", 5)  # a different body changes nothing
        assert again["duplicate"] is True and again["order"] == first["order"]
        assert "duplicate" not in first
        accepted = client.confirm(s)
        repeat = client.confirm(s)
        same = {k: v for k, v in accepted.items() if k not in ("req_id", "ts")}
        assert repeat == {**same, "duplicate": True, "req_id": repeat["req_id"], "ts": repeat["ts"]}
    assert shared.venue()["orders_placed"] >= 1


def test_abort_of_a_prepared_signal_answers_aborted_and_a_later_confirm_is_already_final(
    shared: RunningEngine,
) -> None:
    s = sig()
    with shared.client() as client:
        client.prepare(s, "ETHUSDT", "sell", 1)
        assert client.abort(s)["type"] == "ABORTED"
        late = client.confirm(s)
    assert (late["type"], late["code"]) == ("REJECTED", "ALREADY_FINAL")


def test_abort_after_confirm_is_already_final(shared: RunningEngine) -> None:
    s = sig()
    with shared.client() as client:
        client.prepare(s, "ETHUSDT", "buy", 1)
        client.confirm(s)
        refused = client.abort(s)
    assert (refused["type"], refused["code"]) == ("REJECTED", "ALREADY_FINAL")


def test_cancel_of_a_resting_order_answers_canceled_and_pushes_the_execution(shared: RunningEngine) -> None:
    s = sig()
    with shared.client() as client:
        client.prepare(s, "BTCUSDT", "buy", 1, "limit", price=1000.0)
        client.confirm(s)
        assert [client.next_execution(3)["status"] for _ in range(2)] == ["SUBMITTED", "ACCEPTED"]
        canceled = client.cancel(s)
        assert canceled["type"] == "CANCELED" and canceled["client_order_id"]
        assert client.next_execution(3)["status"] == "CANCELED"
        assert client.cancel(s)["duplicate"] is True


def test_cancel_of_a_finished_order_is_already_final(shared: RunningEngine) -> None:
    s = sig()
    with shared.client() as client:
        client.prepare(s, "BTCUSDT", "buy", 0.01)
        client.confirm(s)
        refused = client.cancel(s)
    assert (refused["type"], refused["code"]) == ("REJECTED", "ALREADY_FINAL")


def test_confirm_abort_or_cancel_of_a_signal_never_prepared_is_unknown_signal(shared: RunningEngine) -> None:
    with shared.client() as client:
        for kind in ("CONFIRM", "ABORT", "CANCEL"):
            reply = client.request({"type": kind, "signal_id": sig()})
            assert (reply["type"], reply["code"]) == ("REJECTED", "UNKNOWN_SIGNAL"), kind


def test_confirm_after_expires_at_is_expired(shared: RunningEngine) -> None:
    s = sig()
    with shared.client() as client:
        prepared = client.prepare(s, "BTCUSDT", "buy", 0.01, ttl_ms=50)
        time.sleep(0.2)
        refused = client.confirm(s)
    assert prepared["expires_at"] - _now() < 50
    assert (refused["type"], refused["code"]) == ("REJECTED", "EXPIRED")


def test_a_post_only_order_that_would_take_is_venue_rejected(shared: RunningEngine) -> None:
    s = sig()
    with shared.client() as client:
        client.prepare(s, "BTCUSDT", "buy", 1, "limit", price=65000.0, time_in_force="PO")
        refused = client.confirm(s)
    assert (refused["type"], refused["code"]) == ("REJECTED", "VENUE_REJECTED")
    assert "post-only" in refused["reason"]


def test_pipelined_prepare_and_confirm_of_one_signal_both_succeed(shared: RunningEngine) -> None:
    s = sig()
    with shared.client() as client:
        first = client.send({"type": "PREPARE", "signal_id": s, "symbol": "BTCUSDT", "side": "buy",
                             "quantity": 0.01, "order_type": "market"})
        second = client.send({"type": "CONFIRM", "signal_id": s})
        assert client.wait(second)["type"] == "ACCEPTED"
        assert client.wait(first)["type"] == "PREPARED"


def test_stale_requests_are_refused_and_the_connection_is_kept(shared: RunningEngine) -> None:
    with shared.client() as client:
        for ts in (_now() - 60_000, _now() + 60_000):
            reply = client.request({"type": "PREPARE", "signal_id": sig(), "ts": ts, "symbol": "BTCUSDT",
                                    "side": "buy", "quantity": 1, "order_type": "market"})
            assert (reply["type"], reply["code"]) == ("REJECTED", "STALE")
        assert client.ping()["type"] == "PONG"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"symbol": "btc-usdt"}, "symbol"),
        ({"symbol": "DOGEUSDT"}, "symbol"),
        ({"side": "long"}, "side"),
        ({"side": None, "direction": 2}, "direction"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": "1"}, "quantity"),
        ({"quantity": 1e30}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"order_type": "stop"}, "order_type"),
        ({"order_type": "limit"}, "price"),
        ({"order_type": "limit", "price": -5}, "price"),
        ({"time_in_force": "GTD"}, "time_in_force"),
        ({"time_in_force": "PO"}, "time_in_force"),
        ({"reduce_only": "yes"}, "reduce_only"),
        ({"exchange": "nowhere"}, "exchange"),
        ({"ttl_ms": 60001}, "ttl_ms"),
        ({"take_profits": [1, "x"]}, "take_profits[1]"),
        ({"stop_loss": 0}, "stop_loss"),
        ({"phase": "one"}, "phase"),
    ],
)
def test_an_invalid_prepare_is_refused_naming_the_field(
    shared: RunningEngine, fields: dict, named: str
) -> None:
    request = {"type": "PREPARE", "signal_id": sig(), "symbol": "BTCUSDT", "side": "buy", "quantity": 1,
               "order_type": "market", **fields}
    request = {k: v for k, v in request.items() if v is not None}
    with shared.client() as client:
        reply = client.request(request)
        assert (reply["type"], reply["code"]) == ("REJECTED", "INVALID")
        assert reply["reason"].startswith(f"{named}:"), reply["reason"]
        assert client.ping()["type"] == "PONG"


@pytest.mark.parametrize(
    "request_",
    [
        {"type": "PREPARE"},
        {"type": "SEND", "signal_id": "x"},
        {"type": "CONFIRM", "signal_id": "has space"},
        {"type": "CONFIRM", "signal_id": "x" * 129},
        {"type": "CONFIRM", "signal_id": "ok", "ts": "now"},
        {"type": "CONFIRM", "signal_id": "ok", "req_id": 7},
    ],
)
def test_malformed_common_fields_are_invalid(shared: RunningEngine, request_: dict) -> None:
    with shared.client() as client:
        payload = {"ts": _now(), **request_}
        client.send_raw(encode_message(shared.secret, payload))
        reply = client.recv_unmatched(3) if not isinstance(payload.get("req_id"), str) else None
        assert reply is not None and (reply["type"], reply["code"]) == ("REJECTED", "INVALID")
        assert client.ping()["type"] == "PONG"


# --- frames that close the connection -------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">I", 5) + b"x" * 5,  # shorter than a MAC
        struct.pack(">I", 70_000) + b"x" * 64,  # longer than allowed
        struct.pack(">I", 0),
    ],
)
def test_a_frame_length_out_of_range_is_bad_frame_and_closes_the_connection(
    shared: RunningEngine, frame: bytes
) -> None:
    with shared.client() as client:
        client.send_raw(frame)
        reply = client.recv_unmatched(3)
        assert (reply["type"], reply["code"]) == ("REJECTED", "BAD_FRAME")
        assert _closed(client)


@pytest.mark.parametrize("payload", [b"[1, 2]", b"\xff\xfe{}", b'{"a": NaN}', b"not json", b"42"])
def test_a_payload_that_is_not_a_json_object_is_bad_frame_and_closes(
    shared: RunningEngine, payload: bytes
) -> None:
    with shared.client() as client:
        client.send_raw(encode_frame(shared.secret, payload))
        reply = client.recv_unmatched(3)
        assert (reply["type"], reply["code"]) == ("REJECTED", "BAD_FRAME")
        assert _closed(client)


def test_a_wrong_mac_is_bad_signature_and_closes_the_connection(shared: RunningEngine) -> None:
    with shared.client() as client:
        body = b'{"type":"PING","ts":1}'
        client.send_raw(struct.pack(">I", 32 + len(body)) + sign(b"w" * 32, body) + body)
        reply = client.recv_unmatched(3)
        assert (reply["type"], reply["code"]) == ("REJECTED", "BAD_SIGNATURE")
        assert _closed(client)


def test_replies_are_signed_with_the_engine_secret(shared: RunningEngine) -> None:
    with FastPathClient(shared.socket, b"z" * 32, verify=True).connect() as wrong:
        wrong.send({"type": "PING"})
        with pytest.raises(Exception, match="MAC"):
            wrong.recv_unmatched(3)


# --- the socket ---------------------------------------------------------------------------


def test_the_socket_is_mode_0600(shared: RunningEngine) -> None:
    mode = os.stat(shared.socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


# --- engines of their own ---------------------------------------------------------------


def test_busy_when_a_connection_has_too_many_requests_in_flight(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "[ipc]\nmax_in_flight = 1\n").start()
    try:
        with engine.client() as client:
            frames = b"".join(
                encode_message(engine.secret, {"type": "PREPARE", "signal_id": f"b{i}", "ts": _now(),
                                               "req_id": f"r{i}", "symbol": "BTCUSDT", "side": "buy",
                                               "quantity": 0.01, "order_type": "market"})
                for i in range(3))
            client.send_raw(frames)
            replies = [client.wait(f"r{i}") for i in range(3)]
            assert replies[0]["type"] == "PREPARED"
            assert [(r["type"], r["code"]) for r in replies[1:]] == [("REJECTED", "BUSY")] * 2
            # BUSY is not final: the same request later succeeds.
            assert client.prepare("b1", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
    finally:
        engine.stop()


def test_internal_when_the_risk_guard_does_not_answer_and_the_resend_learns_the_outcome(
    tmp_path: Path,
) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "[ipc]\nrequest_timeout_ms = 300\n").start()
    try:
        engine.pause("risk")
        try:
            with engine.client() as client:
                started = time.monotonic()
                reply = client.prepare("i1", "BTCUSDT", "buy", 0.01)
                assert (reply["type"], reply["code"]) == ("REJECTED", "INTERNAL")
                assert time.monotonic() - started < 2.0
                assert engine.venue()["staged"] == 0, "nothing may reach a venue without the risk guard"
        finally:
            engine.resume("risk")
        with engine.client() as client:
            late = wait_for(lambda: (r := client.prepare("i1", "BTCUSDT", "buy", 0.01))["type"] != "REJECTED"
                            and r, 5.0, 0.05, "the late outcome")
            assert late["type"] == "PREPARED"
            assert client.confirm("i1")["type"] == "ACCEPTED"
        assert engine.venue()["orders_placed"] == 1
    finally:
        engine.stop()


def test_halted_when_the_trading_state_forbids_orders(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path).start()
    engine.stop()
    store = Store(str(engine.data_dir / "risk"))
    store.put(b"state:global", b"HALTED")
    store.close()
    engine = RunningEngine(tmp_path).start()
    try:
        with engine.client() as client:
            refused = client.prepare(sig(), "BTCUSDT", "buy", 0.01)
            assert (refused["type"], refused["code"]) == ("REJECTED", "HALTED")
    finally:
        engine.stop()


def test_venue_unavailable_when_the_venue_cannot_be_reached(tmp_path: Path) -> None:
    config = FAST_SUPERVISION + REAL_VENUE_LIMITS + """
[venues.paper]
exchange = "paper"
[venues.bybit]
exchange = "bybit"
api_key = "k"
api_secret = "s"
symbols = ["BTCUSDT"]
base_url = "http://127.0.0.1:9"
"""
    engine = RunningEngine(tmp_path, config).start()
    try:
        with engine.client() as client:
            refused = client.prepare(sig(), "BTCUSDT", "buy", 0.01, exchange="bybit")
            assert (refused["type"], refused["code"]) == ("REJECTED", "VENUE_UNAVAILABLE")
            assert client.prepare(sig(), "BTCUSDT", "buy", 0.01)["type"] == "PREPARED", "paper still trades"
    finally:
        engine.stop()


def test_a_stale_socket_file_is_replaced_when_the_gateway_restarts(engine: RunningEngine) -> None:
    old = engine.pids()["gateway"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: engine.pids().get("gateway") not in (None, old), 5.0, 0.02, "a new gateway")
    assert os.path.exists(engine.socket)
    wait_for(lambda: _connects(engine.socket), 5.0, 0.02, "the socket served again")
    with engine.client() as client:
        assert client.ping()["type"] == "PONG"
    assert stat.S_IMODE(os.stat(engine.socket).st_mode) == 0o600


def _connects(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def test_a_connection_closed_by_the_engine_raises_connection_closed(shared: RunningEngine) -> None:
    with shared.client() as client:
        client.send_raw(struct.pack(">I", 1) + b"\x00" * 8)
        client.recv_unmatched(3)
        with pytest.raises(ConnectionClosed):
            client.ping()


def test_a_closed_connection_leaves_nothing_behind_in_the_gateway(engine: RunningEngine) -> None:
    with engine.client() as client:
        for i in range(5):
            client.prepare(f"leak-{i}", "BTCUSDT", "buy", 0.001)
            client.confirm(f"leak-{i}")
        assert engine.actor("gateway")["detail"]["confirmers"] == 5
    wait_for(lambda: engine.actor("gateway")["detail"]["confirmers"] == 0, 5, 0.05, "entries dropped")
