from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from titan_actors.runtime.aiohost import AsyncHost
from titan_actors.runtime.store import Store


def _drain_until(host: AsyncHost, done: list, count: int) -> None:
    while len(done) < count:
        ready, _, _ = select.select([host.fileno()], [], [], 5)
        assert ready, "the host never woke the actor"
        host.drain()


def test_results_of_coroutines_come_back_in_the_actor_thread() -> None:
    host = AsyncHost()
    results: list[tuple[object, object, str]] = []
    actor_thread = threading.current_thread().name

    async def work(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * 2

    async def fail() -> None:
        raise ValueError("boom")

    try:
        host.submit(work(21), lambda r, e: results.append((r, e, threading.current_thread().name)))
        host.submit(fail(), lambda r, e: results.append((r, e, threading.current_thread().name)))
        _drain_until(host, results, 2)
        values = {r for r, _e, _t in results}
        errors = [e for _r, e, _t in results if e is not None]
        assert 42 in values
        assert len(errors) == 1 and isinstance(errors[0], ValueError)
        assert {t for *_x, t in results} == {actor_thread}
    finally:
        host.stop()


def test_a_callback_that_raises_propagates_out_of_drain() -> None:
    host = AsyncHost()
    try:
        host.post(lambda: 1 / 0)
        select.select([host.fileno()], [], [], 5)
        with pytest.raises(ZeroDivisionError):
            host.drain()
    finally:
        host.stop()


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
