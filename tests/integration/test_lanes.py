"""FastLanes: real Unix sockets between hubs, and between real actors."""

from __future__ import annotations

import select
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

from tests.support.engine import wait_for
from tests.support.system import ActorSystemHarness
from titan_actors.messages import ChildSpec, Directory, GetDirectory, Ping, Relay, RelayResult
from titan_actors.runtime.lanes import LaneHub
from titan_actors.runtime.placement import Placement
from titan_actors.runtime.protocol import Routed


def _hubs() -> tuple[LaneHub, LaneHub]:
    engine = uuid.uuid4().hex[:8]
    a = LaneHub(engine_id=engine, role="a")
    # Two hubs in one process would share a name: give b its own engine id.
    b = LaneHub(engine_id=engine + "b", role="b")
    return a, b


def _receive(hub: LaneHub, count: int, timeout: float = 5.0) -> list[tuple[object, str]]:
    got: list[tuple[object, str]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        ready, _, _ = select.select(hub.fds(), [], [], 0.05)
        got.extend((msg, src) for src, _dst, msg in hub.read(ready))
    return got


def test_a_lane_delivers_messages_in_order_with_the_senders_role() -> None:
    a, b = _hubs()
    try:
        for i in range(1000):
            assert a.send(b.name, "a", "b", Ping(f"p{i}"))
        assert a.flush()
        got = _receive(b, 1000)
        assert [m.req_id for m, _ in got] == [f"p{i}" for i in range(1000)]
        assert {role for _, role in got} == {"a"}
        assert b.received == 1000
    finally:
        a.close()
        b.close()


def test_a_lane_carries_a_frame_larger_than_the_socket_buffer() -> None:
    a, b = _hubs()
    try:
        big = Ping("x" * 3_000_000)
        assert a.send(b.name, "a", "b", big)
        flushed = a.flush()
        got: list[tuple[object, str]] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            if not flushed:
                flushed = a.flush()
            ready, _, _ = select.select(b.fds(), [], [], 0.01)
            got.extend((msg, src) for src, _dst, msg in b.read(ready))
        assert got and got[0][0] == big
    finally:
        a.close()
        b.close()


def test_a_message_that_is_not_urgent_waits_for_a_lazy_flush_or_an_urgent_one_to_the_same_peer() -> None:
    a, b = _hubs()
    try:
        assert a.send(b.name, "a", "b", Ping("ack-1"), urgent=False)
        assert a.flush() and a.holding()
        assert _receive(b, 1, timeout=0.2) == []  # held back
        assert a.send(b.name, "a", "b", Ping("reply"))  # urgent: takes what waited along, in order
        assert a.flush() and not a.holding()
        assert [m.req_id for m, _ in _receive(b, 2)] == ["ack-1", "reply"]
        assert a.send(b.name, "a", "b", Ping("ack-2"), urgent=False)
        assert a.flush(lazy_too=True) and not a.holding()
        assert [m.req_id for m, _ in _receive(b, 1)] == ["ack-2"]
    finally:
        a.close()
        b.close()


def test_closing_a_hub_writes_what_was_held_back() -> None:
    a, b = _hubs()
    try:
        assert a.send(b.name, "a", "b", Ping("last"), urgent=False)
        a.close()
        assert [m.req_id for m, _ in _receive(b, 1)] == ["last"]
    finally:
        b.close()


def test_sending_to_a_peer_that_is_gone_answers_false_so_the_caller_uses_thespian() -> None:
    a, b = _hubs()
    name = b.name
    b.close()
    try:
        assert a.send(name, "a", "b", Ping("lost")) is False
        assert a.send("\0titan/nothing/1", "a", "b", Ping("lost")) is False
    finally:
        a.close()


def test_a_lane_refuses_a_process_outside_the_engines_process_group(tmp_path: Path) -> None:
    a, b = _hubs()
    marker = tmp_path / "pwned"
    try:
        # A pickle that would create a file if it were ever loaded.
        script = f"""
import pickle, socket, struct, os
class Evil:
    def __reduce__(self):
        return (open, ({str(marker)!r}, "w"))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({b.name!r})
for obj in ("intruder", Evil()):
    body = pickle.dumps(obj)
    s.sendall(struct.pack(">I", len(body)) + body)
s.close()
"""
        subprocess.run([sys.executable, "-c", script], start_new_session=True, check=True, timeout=30)
        got = _receive(b, 1, timeout=1.0)
        assert got == []
        assert not marker.exists(), "a stranger's pickle was loaded"
        # The hub still serves its own engine afterwards.
        assert a.send(b.name, "a", "b", Ping("still-here")) and a.flush()
        assert [m.req_id for m, _ in _receive(b, 1)] == ["still-here"]
    finally:
        a.close()
        b.close()


def test_an_actor_falls_back_to_thespian_when_the_lane_is_down_or_the_peer_on_another_host(
    actor_system: ActorSystemHarness,
) -> None:
    worker = "tests.support.actors.Steady"
    # Lanes join workers: one per actor here.
    actor_system.start_root([ChildSpec(id="a", actor=worker), ChildSpec(id="b", actor=worker)],
                            placement=Placement(profile="isolated"))
    directory = wait_for(
        lambda: (d := actor_system.asys.ask(actor_system.root, GetDirectory(), 5)) and d.get("b") and d,
        10.0, 0.05, "directory with a and b",
    )
    a = directory.get("a").address

    def relay_via_lane() -> RelayResult:
        result = actor_system.asys.ask(a, Routed("a", None, Relay(uuid.uuid4().hex, "b", "lane")), 5)
        assert isinstance(result, RelayResult) and result.ok, result
        return result

    assert relay_via_lane().arrived_by == "lane"
    b = directory.get("b")
    for bump, broken in enumerate((replace(b, lane="\0titan/gone/1"), replace(b, host="another-host")), 1):
        peers = tuple(broken if p.role == "b" else p for p in directory.peers)
        actor_system.asys.tell(a, Directory(directory.version + bump, peers))
        result = relay_via_lane()
        assert result.arrived_by == "thespian"
        assert result.pid == b.pid
