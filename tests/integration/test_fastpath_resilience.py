"""FastPath under abuse and failure: fuzzed frames, replays, kills at the
worst moments, partial fills, the asyncio client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.engine import FAST_SUPERVISION, RunningEngine, titan_cmd, wait_for
from tests.support.nats import read_stream
from titan_actors.client import AsyncFastPathClient
from titan_actors.domain.ids import client_order_id
from titan_actors.wire import subjects
from titan_actors.wire.fastpath import FrameReader, decode_payload, encode_frame, encode_message, mac_ok

CODES_THAT_CLOSE = {"BAD_FRAME", "BAD_SIGNATURE"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = RunningEngine(tmp_path_factory.mktemp("resilience")).start()
    try:
        yield running
    finally:
        running.stop()
        assert running.leftovers() == []


def _now() -> int:
    return time.time_ns() // 1_000_000


def _good_prepare(signal_id: str) -> dict:
    return {"type": "PREPARE", "signal_id": signal_id, "ts": _now(), "symbol": "BTCUSDT", "side": "buy",
            "quantity": 0.001, "order_type": "market"}


def _exchange(path: str, secret: bytes, data: bytes, timeout: float = 3.0) -> tuple[list[dict], bool]:
    """Send raw bytes, then half-close; collect signed replies until the engine
    closes or goes quiet. Returns (replies, closed_by_engine)."""
    replies: list[dict] = []
    reader = FrameReader()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(data)
        s.settimeout(0.12)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return replies, False
            except ConnectionResetError:
                return replies, True
            if not chunk:
                return replies, True
            reader.feed(chunk)
            for frame in reader.frames():
                assert mac_ok(secret, frame), "every reply must be signed"
                replies.append(decode_payload(frame.payload))
    return replies, False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["PREPARE", "CONFIRM", "ABORT", "CANCEL", "PING", "NOPE"]) | json_values,
        "signal_id": st.text(max_size=140) | json_values,
        "ts": st.just(None) | st.integers() | json_values,
        "symbol": st.sampled_from(["BTCUSDT", "BTC/USDT:USDT", "x"]) | json_values,
        "side": st.sampled_from(["buy", "sell"]) | json_values,
        "quantity": st.floats(allow_nan=False, allow_infinity=False) | json_values,
        "order_type": st.sampled_from(["market", "limit"]) | json_values,
        "price": json_values,
        "ttl_ms": json_values,
        "req_id": st.text(max_size=10) | json_values,
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["signed_json", "mutated", "random_bytes", "bad_length", "unsigned"]),
    obj=request_like,
    noise=st.binary(max_size=300),
    flip=st.integers(min_value=0, max_value=10_000),
)
def test_any_frame_gets_a_signed_reply_or_the_specs_close_and_others_keep_trading(
    shared: RunningEngine, kind: str, obj: dict, noise: bytes, flip: int
) -> None:
    secret = shared.secret
    if obj.get("ts") is None:
        obj = {**obj, "ts": _now()}
    body = json.dumps(obj).encode()  # stdlib: also integers beyond 64 bits
    if kind == "signed_json":
        data = encode_frame(secret, body)
    elif kind == "mutated":
        frame = bytearray(encode_frame(secret, body))
        frame[flip % len(frame)] ^= 0x5A
        data = bytes(frame)
    elif kind == "random_bytes":
        data = noise or b"\x00"
    elif kind == "bad_length":
        data = struct.pack(">I", 65537 + flip) + noise
    else:
        payload = noise or b"{}"
        data = struct.pack(">I", 32 + len(payload)) + b"\x00" * 32 + payload
    replies, closed = _exchange(shared.socket, secret, data)
    for reply in replies:
        assert reply["type"] in {"PONG", "PREPARED", "ACCEPTED", "ABORTED", "CANCELED", "REJECTED"}, reply
        assert isinstance(reply["ts"], int)
        if reply["type"] == "REJECTED":
            assert reply["code"] and reply["reason"]
    if any(r.get("code") in CODES_THAT_CLOSE for r in replies):
        assert closed, "BAD_FRAME / BAD_SIGNATURE must close the connection"
    # Meanwhile, a well-formed sender on another connection still trades.
    with shared.client() as client:
        signal_id = f"fz-{flip}-{time.monotonic_ns()}"
        assert client.request(_good_prepare(signal_id))["type"] == "PREPARED"


def test_a_captured_confirm_replayed_is_a_duplicate_within_the_window_and_stale_after(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "[ipc]\nreplay_window_ms = 1000\n").start()
    try:
        with engine.client() as client:
            client.prepare("replay-1", "BTCUSDT", "buy", 0.01)
            captured = encode_message(engine.secret, {"type": "CONFIRM", "signal_id": "replay-1",
                                                      "ts": _now(), "req_id": "cap"})
            client.send_raw(captured)
            assert client.wait("cap")["type"] == "ACCEPTED"
        placed = engine.venue()["orders_placed"]
        with engine.client() as attacker:
            attacker.send_raw(captured)
            replayed = attacker.wait("cap")
            assert (replayed["type"], replayed["duplicate"]) == ("ACCEPTED", True)
        time.sleep(1.2)
        with engine.client() as attacker:
            attacker.send_raw(captured)
            stale = attacker.wait("cap")
            assert (stale["type"], stale["code"]) == ("REJECTED", "STALE")
        assert engine.venue()["orders_placed"] == placed == 1
    finally:
        engine.stop()


@pytest.mark.parametrize(
    ("role", "point"),
    [
        ("venue:paper", "adapter.after_journal"),
        ("venue:paper", "adapter.after_venue"),
        ("gateway", "gateway.before_persist.CONFIRM"),
        ("gateway", "gateway.after_persist.CONFIRM"),
    ],
)
def test_a_kill_between_journal_and_reply_and_a_resent_confirm_make_exactly_one_order(
    engine: RunningEngine, role: str, point: str
) -> None:
    with engine.client() as client:
        assert client.prepare("k-1", "BTCUSDT", "buy", 0.5)["type"] == "PREPARED"
    old = engine.pids()[role]
    engine.control({"cmd": "fault", "role": role, "at": point})
    with engine.client(timeout=5) as client:
        try:
            first = client.confirm("k-1")
        except Exception as exc:  # the connection may die with the gateway
            first = {"type": "lost", "error": repr(exc)}
    assert first.get("type") != "ACCEPTED" or role != "gateway"
    wait_for(lambda: engine.pids().get(role) not in (None, old), 5.0, 0.02, f"{role} restarted")
    engine.wait_whole(set(engine.pids()))

    def resend() -> dict | None:
        try:
            with engine.client(timeout=3) as client:
                reply = client.confirm("k-1")
        except Exception:
            return None
        return reply if reply["type"] == "ACCEPTED" else None

    wait_for(resend, 10.0, 0.1, "the resent CONFIRM accepted")
    assert resend()["duplicate"] is True
    venue = engine.venue()
    assert venue["orders_placed"] == 1, "exactly one order at the venue"
    assert venue["positions"]["BTCUSDT"]["qty"] == pytest.approx(0.5)
    # Never applied twice. (A fill reported by an adapter killed before it
    # reported can still be missing here: re-driving it is the shadow-state issue's.)
    position = engine.actor("position:BTCUSDT")["detail"]
    assert position["fills"] <= 1
    assert position["net"].get("paper", 0.0) in (0.0, pytest.approx(0.5))


@contextlib.contextmanager
def _three_maker_fills(tmp_path: Path, liquidity: str, qty: float) -> Iterator[tuple[RunningEngine, list]]:
    """A resting limit buy of `qty` on a paper venue filling `liquidity` a quote,
    three quotes crossing it: the engine and the three fills pushed."""
    config = FAST_SUPERVISION + f"[venues.paper]\nexchange = 'paper'\nliquidity = {liquidity}\n"
    engine = RunningEngine(tmp_path, config).start()
    try:
        with engine.client() as client:
            client.prepare("lim-1", "BTCUSDT", "buy", qty, "limit", price=59000.0)
            assert client.confirm("lim-1")["type"] == "ACCEPTED"
            assert [client.next_execution(3)["status"] for _ in range(2)] == ["SUBMITTED", "ACCEPTED"]
            for _ in range(3):
                engine.control({"cmd": "price", "symbol": "BTCUSDT", "bid": 58900, "ask": 58950,
                                "last": 58920})
            fills = [client.next_execution(3) for _ in range(3)]
        wait_for(lambda: engine.actor("position:BTCUSDT")["detail"]["fills"] == 3, 3.0, 0.05,
                 "three fills at the position actor")
        yield engine, fills
    finally:
        engine.stop()


def test_a_resting_limit_fills_in_parts_as_the_market_moves_and_each_fill_is_pushed(tmp_path: Path) -> None:
    with _three_maker_fills(tmp_path, "0.4", 1.0) as (_engine, fills):
        assert [f["status"] for f in fills] == ["PARTIALLY_FILLED", "PARTIALLY_FILLED", "FILLED"]
        assert [f["last_fill"]["qty"] for f in fills] == [0.4, 0.4, 0.2]
        assert all(f["last_fill"]["price"] == 59000.0 and f["last_fill"]["liquidity"] == "maker"
                   for f in fills)
        assert fills[-1]["filled_qty"] == 1


def test_three_fills_of_a_tenth_are_exactly_three_tenths_on_every_wire(tmp_path: Path) -> None:
    """0.1 + 0.1 + 0.1 is 0.30000000000000004 in floats: the engine's numbers
    are decimals, written as the shortest JSON number that equals them."""
    with _three_maker_fills(tmp_path, "0.1", 0.3) as (engine, fills):
        assert [f["filled_qty"] for f in fills] == [0.1, 0.2, 0.3]  # exactly: FastPath EXECUTION
        out = subprocess.run(titan_cmd("positions", "--json", "--config", str(engine.config)), env=engine.env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        (row,) = [r for r in json.loads(out.stdout) if r["symbol"] == "BTCUSDT"]
        assert row["qty"] == 0.3 and '"qty": 0.3,' in out.stdout  # titan positions --json
        events = read_stream(engine.nats_url, subjects.report("BTCUSDT"))
        assert [e["data"]["filled_qty"] for e in events if e["type"] == "OrderPartiallyFilled"
                or e["type"] == "OrderFilled"] == [0.1, 0.2, 0.3]  # NATS events


def test_a_bracket_places_reduce_only_exits_after_the_entry_fills_and_cancels_the_rest_when_flat(
    tmp_path: Path,
) -> None:
    engine = RunningEngine(tmp_path).start()
    try:
        with engine.client() as client:
            client.prepare("br-1", "BTCUSDT", "buy", 1.0, stop_loss=58000.0, take_profits=[61000.0])
            client.confirm("br-1")
            seen = [client.next_execution(3) for _ in range(3)]
            assert seen[-1]["status"] == "FILLED"
            exits = {}
            while len(exits) < 2 or any(e["status"] != "ACCEPTED" for e in exits.values()):
                report = client.next_execution(3)
                exits[report["leg"]] = report
            assert set(exits) == {"sl", "tp1"}
            engine.control({"cmd": "price", "symbol": "BTCUSDT", "bid": 61000, "ask": 61010, "last": 61005})
            after = {}
            while not (after.get("tp1", {}).get("status") == "FILLED"
                       and after.get("sl", {}).get("status") == "CANCELED"):
                report = client.next_execution(3)
                after[report["leg"]] = report
        assert engine.venue()["positions"]["BTCUSDT"]["qty"] == pytest.approx(0.0)
        assert engine.venue()["open_orders"] == 0
    finally:
        engine.stop()


def test_the_asyncio_client_pipelines_and_matches_replies(shared: RunningEngine) -> None:
    async def run() -> list[dict]:
        async with AsyncFastPathClient(shared.socket, shared.secret) as client:
            prepares = [await client.send(_good_prepare(f"as-{i}-{time.monotonic_ns()}")) for i in range(20)]
            replies = await asyncio.gather(*prepares)
            confirm = await client.confirm(replies[0]["signal_id"])
            execution = await client.next_execution(3)
            return [*replies, confirm, execution]

    results = asyncio.run(run())
    assert all(r["type"] == "PREPARED" for r in results[:20])
    assert len({r["signal_id"] for r in results[:20]}) == 20
    assert results[20]["type"] == "ACCEPTED"
    assert results[21]["type"] == "EXECUTION"


def test_a_frame_sent_in_single_bytes_is_still_understood(shared: RunningEngine) -> None:
    frame = encode_message(shared.secret, {"type": "PING", "ts": _now(), "req_id": "slow"})
    with shared.client() as client:
        for byte in frame:
            client.send_raw(bytes([byte]))
        assert client.wait("slow")["type"] == "PONG"


def test_the_gateway_survives_a_client_that_never_reads(shared: RunningEngine) -> None:
    flood = b"".join(encode_message(shared.secret, {"type": "PING", "ts": _now()}) for _ in range(20000))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(shared.socket)
    s.setblocking(False)
    try:
        try:
            s.sendall(flood)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            pass
        with shared.client() as client:
            assert client.ping()["type"] == "PONG"
    finally:
        s.close()
    assert os.path.exists(shared.socket)


def test_a_confirm_resent_after_internal_gets_the_code_its_order_was_refused_with(tmp_path: Path) -> None:
    """The first CONFIRM times out (INTERNAL) while the adapter is held, and
    the gateway that would have kept the late answer restarts; the venue
    cannot be reached when the CONFIRM is handled, so the order is refused
    VENUE_UNAVAILABLE; the resent CONFIRM, answered by the adapter's
    journal, says so — not VENUE_REJECTED."""
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client(timeout=10) as client:
            assert client.prepare("ru-1", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
            engine.control({"cmd": "venue_outage", "down": True})
            engine.pause("venue:paper")
            try:
                assert client.confirm("ru-1")["code"] == "INTERNAL"
                engine.kill("gateway")
            finally:
                engine.resume("venue:paper")
        wait_for(lambda: engine.control({"cmd": "venue_orders"})["journal"][client_order_id("ru-1")]["status"]
                 == "REJECTED", 10, 0.05, "the order refused")
        engine.wait_serving()
        with engine.client(timeout=10) as client:
            again = client.confirm("ru-1")
        assert again["type"] == "REJECTED" and again["code"] == "VENUE_UNAVAILABLE", again
        assert "simulated outage" in again["reason"]
    finally:
        engine.stop()
