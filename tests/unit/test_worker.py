"""A worker in-process: delivery in memory, in order and in generations, and
a raising actor dropped alone. Thespian is not involved: what the worker
would send on it is recorded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.actors import Recorder
from titan_actors.messages import ChildStarted, EngineInfo, Init
from titan_actors.runtime.placement import Placement
from titan_actors.runtime.protocol import CellExited, Routed, StartCell
from titan_actors.runtime.worker import Worker


class _Worker(Worker):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[Any, Any]] = []
        self._myRef = SimpleNamespace(address="worker-w")

    def send(self, address: Any, msg: Any) -> None:
        self.sent.append((address, msg))


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[_Worker]:
    w = _Worker()
    w.name, w.placement, w.parent_address = "w", Placement(), "root-address"
    w.engine = EngineInfo(engine_id="e1", data_dir=str(tmp_path), host="here")
    Recorder.journal = []
    for cell, role in enumerate(("a", "b"), 1):
        w.start_cell(StartCell("tests.support.actors.Recorder", Init(role=role, engine=w.engine, config={}),
                               supervisor="sup", cell=cell))
    w._drain()
    Recorder.journal.clear()
    yield w
    for cell in list(w.cells.values()):
        cell.stop()


def _to(worker: _Worker, role: str, msg: Any) -> None:
    worker._control(Routed(role, None, msg), "asker")
    worker._drain()


def test_started_actors_are_announced_to_their_supervisor_through_the_parent(worker: _Worker) -> None:
    started = [m.msg for _a, m in worker.sent if isinstance(m, Routed) and isinstance(m.msg, ChildStarted)]
    assert [(s.peer.role, s.peer.worker, s.peer.pid) for s in started] == [("a", "w", os.getpid()),
                                                                            ("b", "w", os.getpid())]


def test_messages_between_actors_of_one_worker_arrive_in_memory_in_order(worker: _Worker) -> None:
    sent_before = len(worker.sent)
    for i in range(50):
        worker._control(Routed("a", None, ("tell", "b", i)), "asker")
    worker._drain()
    got = [int(line.split(":")[1]) for line in Recorder.journal if line.startswith("b:") and line != "b:end"]
    assert got == list(range(50))
    assert len(worker.sent) == sent_before, "nothing went through thespian"


def test_delivery_runs_in_generations_each_finishing_its_batch_before_the_next(worker: _Worker) -> None:
    _to(worker, "a", ("tell", "b", ("tell", "a", "pong")))
    assert Recorder.journal == [
        "a:tell:('tell', 'a', 'pong')", "a:end",  # generation 1
        "b:tell:pong", "b:end",  # generation 2: what a told
        "a:pong", "a:end",  # generation 3: what b told
    ]


def test_a_raising_actor_is_dropped_alone_and_its_supervisor_told(worker: _Worker, tmp_path: Path) -> None:
    b = worker.cells["b"]
    worker._control(Routed("b", None, "queued-before"), "asker")  # its mailbox goes with it
    worker.inbox.appendleft(("b", "asker", "boom", "thespian"))
    worker._drain()
    assert "b" not in worker.cells and worker.cells["a"] is not None
    assert "b:queued-before" not in Recorder.journal
    exited = [m.msg for _a, m in worker.sent if isinstance(m, Routed) and isinstance(m.msg, CellExited)]
    assert [(e.role, e.cell, e.reason, e.supervisor) for e in exited] == [("b", b.cell, "crashed", "sup")]
    crash = (tmp_path / "logs" / "crash.log").read_text()
    assert "role=b message=boom worker=w" in crash and "boom, as told" in crash
    _to(worker, "a", "still-here")
    assert Recorder.journal[-2:] == ["a:still-here", "a:end"]


def test_a_late_start_of_a_replaced_incarnation_is_refused_as_old_news(worker: _Worker) -> None:
    worker.kill_cell("a", cell_id=999)  # not the incarnation it hosts: nothing happens to a
    assert worker.cells["a"].cell == 1
    exited = [m.msg for _a, m in worker.sent if isinstance(m, Routed) and isinstance(m.msg, CellExited)]
    assert [(e.role, e.cell) for e in exited] == [("a", 999)], "told that 999 is not here"
