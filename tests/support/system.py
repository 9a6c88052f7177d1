"""A private thespian system in the test process, with a root supervisor
built from child specs given by the test."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from supervisors.embedded_nats import free_port
from supervisors.tree import SUPERVISOR
from titan_actors.messages import (
    ChildSpec,
    ChildStarted,
    EngineInfo,
    Init,
    StatusReply,
    StatusRequest,
    TreeStatus,
    TreeStatusRequest,
)
from titan_actors.runtime.actorsystem import open_actor_system
from titan_actors.runtime.placement import ROOT_WORKER, Placement
from titan_actors.runtime.procs import hostname, pgid_members
from titan_actors.runtime.protocol import StartCell, WorkerInit
from titan_actors.runtime.worker import WORKER_CLASS

__all__ = ["ActorSystemHarness"]


class ActorSystemHarness:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.asys = open_actor_system(admin_port=free_port(),
                                      log_defs={"version": 1, "root": {"level": "WARNING"}})
        self.pgid = 0
        self.root: Any = None

    def engine(self) -> EngineInfo:
        return EngineInfo(engine_id=os.urandom(6).hex(), data_dir=str(self.data_dir), host=hostname())

    def start_root(self, children: list[ChildSpec], *, placement: Placement | None = None,
                   **supervision: Any) -> Any:
        """The root worker with a root supervisor of `children`, placed by
        `placement` (default: the profile of `TITAN_PLACEMENT`, else packed)."""
        self.root = self.asys.createActor(WORKER_CLASS)
        config = {"root": True, "children": children, **supervision}
        placement = placement or Placement(profile=os.environ.get("TITAN_PLACEMENT") or "packed")
        init = Init(role="root", engine=self.engine(), config=config)
        first = StartCell(SUPERVISOR, init, supervisor="", cell=time.time_ns() // 1000)
        started = self.asys.ask(self.root, WorkerInit(name=ROOT_WORKER, engine=init.engine,
                                                      placement=placement, parent_pid=0, first=first), 20)
        assert isinstance(started, ChildStarted), started
        self.pgid = started.peer.pgid
        return started.peer

    def tree(self, timeout: float = 2.0) -> TreeStatus:
        reply = self.asys.ask(self.root, TreeStatusRequest(timeout_s=timeout * 0.8), timeout)
        assert isinstance(reply, TreeStatus), reply
        return reply

    def root_status(self) -> StatusReply:
        reply = self.asys.ask(self.root, StatusRequest(), 5)
        assert isinstance(reply, StatusReply), reply
        return reply

    def shutdown(self) -> None:
        try:
            self.asys.shutdown()
        finally:
            if self.pgid and self.pgid != os.getpgid(0):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while pgid_members(self.pgid) and time.monotonic() < deadline:
                    time.sleep(0.02)

    def leftovers(self) -> list[int]:
        return pgid_members(self.pgid) if self.pgid else []
