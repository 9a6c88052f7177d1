"""The actor's own I/O loop: fds, timers, hand-over to thespian's thread, crashes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from titan_actors.runtime.loop import ActorLoop


class _Harness:
    def __init__(self) -> None:
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.watch = [self.a.fileno()]
        self.read: list[bytes] = []
        self.fired: list[tuple[Any, float]] = []
        self.crashed: list[str] = []
        self.wakes = 0
        self.loop = ActorLoop(name="test", fds=lambda: list(self.watch), serve=self._serve, fire=self._fire,
                              after_wake=self._after_wake, crash=self._crash)

    def _serve(self, ready: list[int]) -> None:
        for _fd in ready:
            data = self.a.recv(100)
            if data == b"boom":
                raise RuntimeError("handler failed")
            self.read.append(data)

    def _fire(self, payload: Any) -> None:
        self.fired.append((payload, time.monotonic()))

    def _after_wake(self) -> None:
        self.wakes += 1

    def _crash(self, what: str) -> None:
        self.crashed.append(what)


@pytest.fixture
def harness() -> Iterator[_Harness]:
    h = _Harness()
    h.loop.start()
    yield h
    h.loop.stop()
    h.a.close()
    h.b.close()


def _until(cond: Any, timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.001)


def test_a_readable_fd_is_served_on_the_loop_thread(harness: _Harness) -> None:
    harness.b.send(b"hello")
    _until(lambda: harness.read)
    assert harness.read == [b"hello"]


def test_timers_fire_in_deadline_order_and_never_early(harness: _Harness) -> None:
    start = time.monotonic()
    with harness.loop.lock:
        harness.loop.after(0.05, "late")
        harness.loop.after(0.01, "early")
    _until(lambda: len(harness.fired) == 2)
    (first, t1), (second, t2) = harness.fired
    assert (first, second) == ("early", "late")
    assert t1 - start >= 0.01 and t2 - start >= 0.05


def test_an_fd_added_from_outside_is_watched_after_a_poke(harness: _Harness) -> None:
    c, d = socket.socketpair()
    try:
        with harness.loop.lock:
            harness.watch.append(c.fileno())
            harness.watch.remove(harness.a.fileno())
            harness.a, c = c, harness.a
        harness.loop.poke()
        d.send(b"new")
        _until(lambda: harness.read)
        assert harness.read == [b"new"]
    finally:
        c.close()
        d.close()


def test_deferred_calls_run_on_the_thread_that_asks_for_them(harness: _Harness) -> None:
    ran_on: list[str] = []
    ready = threading.Event()

    def from_loop(ready_list: list[int]) -> None:
        harness.a.recv(100)
        harness.loop.defer(lambda: ran_on.append(threading.current_thread().name))
        ready.set()

    harness.loop._serve = from_loop
    harness.b.send(b"x")
    assert ready.wait(2)
    assert ran_on == []  # not run by the loop itself
    sel = socket.socket(fileno=socket.dup(harness.loop.thespian_fd()))
    try:
        sel.settimeout(2)
        assert sel.recv(1, socket.MSG_PEEK)  # the other thread was woken
    finally:
        sel.close()
    harness.loop.run_deferred()
    assert ran_on == [threading.current_thread().name]


def test_a_handler_that_raises_is_reported_as_a_crash(harness: _Harness) -> None:
    harness.b.send(b"boom")
    _until(lambda: harness.crashed)
    assert harness.crashed == ["fds-ready"]
    harness.b.send(b"after")
    time.sleep(0.05)
    assert harness.read == []  # nothing more is handled on a crashed loop


def test_the_lock_keeps_the_loop_out_while_another_thread_handles(harness: _Harness) -> None:
    with harness.loop.lock:
        harness.b.send(b"wait")
        time.sleep(0.05)
        assert harness.read == []
    _until(lambda: harness.read)
    assert harness.read == [b"wait"]
