from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from titan_actors.runtime.aiohost import AsyncHost
from titan_actors.runtime.loop import ActorLoop
from titan_actors.runtime.store import Store


def _loop() -> tuple[ActorLoop, list[str]]:
    crashed: list[str] = []
    loop = ActorLoop(name="t", fds=lambda: [], serve=lambda _r: None, fire=lambda _p: None,
                     after_wake=lambda: None, crash=crashed.append)
    loop.start()
    return loop, crashed


def _until(cond: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.002)


def test_results_of_coroutines_come_back_as_handler_calls_on_the_workers_loop_under_its_lock() -> None:
    loop, _crashed = _loop()
    results: list[tuple[object, object, str, bool]] = []

    def guard(fn: Any, *args: Any) -> None:
        fn(*args)

    host = AsyncHost(loop, guard)

    def record(r: object, e: object) -> None:
        held = loop.lock.acquire(blocking=False)  # re-entrant: True only if this thread holds it already
        if held:
            loop.lock.release()
        results.append((r, e, threading.current_thread().name, held))

    async def work(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * 2

    async def fail() -> None:
        raise ValueError("boom")

    try:
        host.submit(work(21), record)
        host.submit(fail(), record)
        _until(lambda: len(results) == 2)
        assert {r for r, *_x in results} >= {42}
        errors = [e for _r, e, *_x in results if e is not None]
        assert len(errors) == 1 and isinstance(errors[0], ValueError)
        assert {t for _r, _e, t, _h in results} == {"t-io"}, "one loop: the worker's"
        assert all(h for *_x, h in results)
    finally:
        loop.stop()
        loop.drain_tasks()


def test_a_stopped_actors_coroutines_are_cancelled_and_its_callbacks_never_run() -> None:
    loop, _crashed = _loop()
    called: list[object] = []
    host = AsyncHost(loop, lambda fn, *a: fn(*a))
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    try:
        host.submit(forever(), lambda r, e: called.append((r, e)))
        assert started.wait(5)
        host.stop()
        time.sleep(0.1)
        assert called == [], "nobody is told: the actor that asked is gone"
        assert not [t for t in asyncio.all_tasks(loop.aio) if not t.done()]
    finally:
        loop.stop()
        loop.drain_tasks()


def test_a_store_write_survives_sigkill_of_its_process(tmp_path: Path) -> None:
    path = tmp_path / "db"
    script = f"""
import os, signal, sys
sys.path.insert(0, {os.getcwd()!r})
from titan_actors.runtime.store import Store
s = Store({str(path)!r})
s.write_batch([(b"fill:1", b"a"), (b"snap", b"v1")])
s.put(b"fill:2", b"b")
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert proc.returncode == -9
    store = Store(str(path))
    try:
        assert dict(store.items(b"fill:")) == {b"fill:1": b"a", b"fill:2": b"b"}
        assert store.get(b"snap") == b"v1"
    finally:
        store.close()


def test_a_store_cannot_be_opened_twice() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        first = Store(d)
        try:
            with pytest.raises(Exception):  # noqa: B017 - RocksDB's lock error type is not exported
                Store(d)
        finally:
            first.close()
