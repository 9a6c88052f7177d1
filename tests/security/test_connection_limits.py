"""Connections: every limit is a refusal with a reason, never a crash: a cap
on connections, idle and partial-frame timeouts, a budget for queued replies,
running out of file descriptors, and NATS commands in flight."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import struct
import time
from collections.abc import Iterator

import nats
import pytest

from tests.support.engine import FAST_SUPERVISION, RunningEngine, wait_for
from titan_actors.wire import subjects
from titan_actors.wire.commands import signed_command
from titan_actors.wire.fastpath import FrameReader, decode_payload, encode_message

LIMITS = FAST_SUPERVISION + """
[ipc]
max_connections = 4
idle_timeout_s = 1.5
partial_frame_timeout_ms = 300
max_queued_reply_bytes = 60000
max_in_flight = 2
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = RunningEngine(tmp_path_factory.mktemp("limits"), LIMITS).start()
    try:
        yield running
    finally:
        running.stop()
        assert running.leftovers() == []


def _raw(engine: RunningEngine) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(engine.socket)
    return sock


def _ping(engine: RunningEngine) -> bytes:
    return encode_message(engine.secret, {"type": "PING", "ts": time.time_ns() // 1_000_000})


def _replies_until_closed(engine: RunningEngine, sock: socket.socket, timeout: float = 5.0) -> list[dict]:
    reader, replies = FrameReader(), []
    sock.settimeout(timeout)
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return replies
        if not data:
            return replies
        reader.feed(data)
        replies += [decode_payload(f.payload) for f in reader.frames()]


def _gateway(engine: RunningEngine) -> dict:
    return engine.actor("gateway")["detail"]


def test_a_connection_beyond_the_cap_gets_busy_and_is_closed(limited: RunningEngine) -> None:
    wait_for(lambda: _gateway(limited)["connections"] == 0, 5, 0.05, "no connections")
    held = [_raw(limited) for _ in range(4)]
    try:
        for sock in held:  # all four are served
            sock.sendall(_ping(limited))
            assert sock.recv(4096)
        extra = _raw(limited)
        replies = _replies_until_closed(limited, extra)
        assert [(r["type"], r["code"]) for r in replies] == [("REJECTED", "BUSY")]
        assert "4 connections" in replies[0]["reason"]
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: _gateway(limited)["connections"] == 0, 5, 0.05, "the four closed")
    with limited.client() as client:
        assert client.ping()["type"] == "PONG"


def test_a_silent_connection_is_closed_and_a_pinging_one_kept(limited: RunningEngine) -> None:
    silent, lively = _raw(limited), _raw(limited)
    try:
        started = time.monotonic()
        for _ in range(6):
            lively.sendall(_ping(limited))
            assert lively.recv(4096)
            time.sleep(0.5)
        assert _replies_until_closed(limited, silent) == []
        assert time.monotonic() - started >= 1.5
        lively.sendall(_ping(limited))
        assert lively.recv(4096), "the connection that kept talking is still served"
    finally:
        silent.close()
        lively.close()
    assert _gateway(limited)["idle_closed"] >= 1


def test_a_frame_left_incomplete_gets_bad_frame(limited: RunningEngine) -> None:
    sock = _raw(limited)
    try:
        sock.sendall(struct.pack(">I", 200) + b"x" * 40)  # promises 200 bytes, sends 40
        replies = _replies_until_closed(limited, sock)
        assert [(r["type"], r["code"]) for r in replies] == [("REJECTED", "BAD_FRAME")]
        assert "incomplete" in replies[0]["reason"]
    finally:
        sock.close()


def test_a_client_that_never_reads_is_dropped_and_others_are_not(limited: RunningEngine) -> None:
    greedy = _raw(limited)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        with limited.client() as polite:
            burst = _ping(limited) * 200
            try:
                for _ in range(100):  # 20,000 pings, never reading a reply
                    greedy.sendall(burst)
            except (BrokenPipeError, ConnectionResetError):
                pass
            wait_for(lambda: _gateway(limited)["slow_readers_closed"] >= 1, 10, 0.05,
                     "the greedy one dropped")
            assert polite.ping()["type"] == "PONG"
            assert _gateway(limited)["queued_reply_bytes"] < 60000
    finally:
        greedy.close()


def test_nats_commands_count_against_the_in_flight_limit(limited: RunningEngine) -> None:
    async def place_three() -> list[dict]:
        nc = await nats.connect(limited.nats_url)
        try:
            requests = []
            for i in range(3):
                body, headers = signed_command(limited.secret, subjects.CMD_PLACE, {
                    "signal_id": f"inflight-{i}", "symbol": "BTCUSDT", "side": "buy", "quantity": 0.01,
                    "order_type": "market"})
                requests.append(nc.request(subjects.CMD_PLACE, body, headers=headers, timeout=8))
            return [json.loads(m.data) for m in await asyncio.gather(*requests)]
        finally:
            await nc.close()

    limited.pause("risk")  # every PREPARE waits for the risk guard
    try:
        replies = asyncio.run(asyncio.wait_for(place_three(), 20))
    finally:
        limited.resume("risk")
    busy = [r for r in replies if r.get("code") == "BUSY"]
    assert len(busy) == 1 and "NATS commands in flight" in busy[0]["reason"]
    assert all(r["type"] == "REJECTED" for r in replies), "none was placed while the guard held them"


def test_running_out_of_file_descriptors_refuses_connections_and_recovers(limited: RunningEngine) -> None:
    pid = limited.pids()["gateway"]
    cell = limited.cells()["gateway"]
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (highest + 1, hard))
    socks = []
    try:
        for _ in range(3):
            socks.append(_raw(limited))
        time.sleep(0.5)
        assert _gateway(limited)["out_of_fds"] >= 1
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        for sock in socks:
            sock.close()
    with limited.client() as client:
        assert client.ping()["type"] == "PONG"
    assert limited.cells()["gateway"] == cell, "the gateway did not crash"
