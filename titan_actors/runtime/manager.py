"""The root worker's manager: placement, the worker processes, the directory.

A supervisor starts, stops and kills its children through this manager
(`start_cell`, `stop_cell`, `kill_cell`), whichever worker placement puts
them in: the root worker itself (the supervisors), or another worker
process, which the manager starts through thespian on first use and again
after it died. The root worker runs no threads, so forking it is safe.

The manager owns the directory (role → `Peer`): every `ChildStarted` adds
a role, every `CellExited` of the same incarnation removes it, and each
change is pushed to every worker.

Failure: a worker process that dies (SIGKILL, exit) is the crash of every
actor it hosted: each one's supervisor gets `CellExited` "worker died" and
restarts it by placement, which starts the worker again. Thespian loses a
`ChildActorExited` when several children die at once, so the manager also
looks at its workers' pids every `SWEEP_S`. A worker that does not answer
`KillCell` within `KILL_GRACE_S` is SIGKILLed.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from thespian.actors import ActorExitRequest, ChildActorExited

from titan_actors.messages import ChildSpec, ChildStarted, Directory, Init, Peer
from titan_actors.runtime.placement import ROOT_WORKER
from titan_actors.runtime.procs import pid_alive
from titan_actors.runtime.protocol import (
    CellExited,
    KillCell,
    KillRole,
    StartCell,
    StopCell,
    WorkerInit,
    WorkerStarted,
)

if TYPE_CHECKING:
    from titan_actors.runtime.worker import Worker

__all__ = ["KILL_GRACE_S", "SWEEP_S", "WorkerManager"]

log = logging.getLogger(__name__)

SWEEP_S = 0.2
KILL_GRACE_S = 2.0
WORKER_START_TIMEOUT_S = 30.0
_SWEEP = "sweep"


@dataclass(slots=True)
class _Proc:
    name: str
    address: Any
    pid: int = 0
    ready: bool = False
    since: float = field(default_factory=time.monotonic)
    pending: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class _Hosted:
    worker: str
    cell: int
    supervisor: str


class WorkerManager:
    """See the module docstring."""

    def __init__(self, host: Worker) -> None:
        self.host = host
        self.workers: dict[str, _Proc] = {}
        self.hosted: dict[str, _Hosted] = {}
        self.peers: dict[str, Peer] = {}
        self._next_cell = time.time_ns() // 1000  # unique across root restarts too
        self._kill_deadlines: dict[tuple[str, int], float] = {}
        host.after(None, SWEEP_S, _SWEEP)

    # --- what supervisors call -------------------------------------------------------

    def start_cell(self, spec: ChildSpec, init: Init, supervisor: str) -> int:
        """Start `spec` where placement puts it; its `ChildStarted` or
        `CellExited` reaches `supervisor`. Returns the incarnation's id."""
        self._next_cell += 1
        cell = self._next_cell
        worker = self.host.placement.worker_for(spec.id, supervisor=spec.kind == "supervisor")
        self.hosted[spec.id] = _Hosted(worker, cell, supervisor)
        start = StartCell(spec.actor, init, supervisor, cell)
        if worker == ROOT_WORKER:
            self.host.start_cell(start)
        else:
            self._to_worker(worker, start)
        return cell

    def register_root(self, start: StartCell) -> None:
        """The root supervisor, started by the engine itself."""
        self.hosted[start.init.role] = _Hosted(ROOT_WORKER, start.cell, "")

    def stop_cell(self, role: str, cell: int) -> None:
        self._end(role, cell, StopCell(role, cell), "stopped")

    def kill_cell(self, role: str, cell: int, reason: str = "killed") -> None:
        self._end(role, cell, KillCell(role, cell, reason), reason)

    def _end(self, role: str, cell: int, command: StopCell | KillCell, reason: str) -> None:
        where = self.hosted.get(role)
        if where is None or where.cell != cell:
            self.gone(role, cell, reason)
            return
        if where.worker == ROOT_WORKER:
            if isinstance(command, StopCell):
                self.host.stop_cell(role, cell)
            else:
                self.host.kill_cell(role, cell, reason)
            return
        proc = self.workers.get(where.worker)
        if proc is not None and proc.ready:
            self.host.send(proc.address, command)
            if isinstance(command, KillCell):
                self._kill_deadlines[(role, cell)] = time.monotonic() + KILL_GRACE_S
            return
        if proc is not None:
            proc.pending = [p for p in proc.pending if not (isinstance(p, StartCell) and p.cell == cell)]
        self.gone(role, cell, "failed at start" if proc is not None else reason)

    def gone(self, role: str, cell: int, reason: str) -> None:
        """`role`'s incarnation `cell` is not hosted anywhere (any more): say so
        to its supervisor (`observe` finds it)."""
        self.host._enqueue("", role, CellExited(role, cell, reason), "memory")

    def kill_role(self, msg: KillRole) -> None:
        """`titan kill`: the actor abruptly, or its whole worker with SIGKILL."""
        where = self.hosted.get(msg.role)
        if where is None:
            log.warning("kill: no actor has the role %s now", msg.role)
            return
        if msg.worker:
            proc = self.workers.get(where.worker)
            pid = proc.pid if proc is not None else (os.getpid() if where.worker == ROOT_WORKER else 0)
            if pid:
                os.kill(pid, signal.SIGKILL)
            return
        self.kill_cell(msg.role, where.cell, "killed")

    # --- worker processes -----------------------------------------------------------------

    def _to_worker(self, name: str, msg: Any) -> None:
        proc = self.workers.get(name)
        if proc is None:
            proc = self._spawn(name)
        if proc.ready:
            self.host.send(proc.address, msg)
        else:
            proc.pending.append(msg)

    def _spawn(self, name: str) -> _Proc:
        from titan_actors.runtime.worker import WORKER_CLASS

        address = self.host.createActor(WORKER_CLASS)
        proc = _Proc(name, address)
        self.workers[name] = proc
        self.host.send(address, WorkerInit(name=name, engine=self.host.engine, placement=self.host.placement,
                                           parent_pid=os.getpid(), directory=self.host.directory))
        return proc

    def receive(self, msg: Any, sender: Any) -> None:
        match msg:
            case WorkerStarted():
                proc = self.workers.get(msg.name)
                if proc is None or proc.address != sender:
                    return
                proc.pid, proc.ready = msg.pid, True
                self.host.send(proc.address, self.host.directory)  # it may have changed since its Init
                pending, proc.pending = proc.pending, []
                for item in pending:
                    self.host.send(proc.address, item)
            case ChildActorExited():
                proc = next((p for p in self.workers.values() if p.address == msg.childAddress), None)
                if proc is not None:
                    self._worker_died(proc)
            case KillRole():
                self.kill_role(msg)

    def _worker_died(self, proc: _Proc) -> None:
        if self.workers.get(proc.name) is not proc:
            return
        del self.workers[proc.name]
        log.error("worker %s (pid %d) died", proc.name, proc.pid)
        failed_at_start = {p.cell for p in proc.pending if isinstance(p, StartCell)}
        for role, where in list(self.hosted.items()):
            if where.worker == proc.name:
                reason = "failed at start" if where.cell in failed_at_start else "worker died"
                self.gone(role, where.cell, reason)

    def fire(self, payload: Any) -> None:
        if payload != _SWEEP:
            return
        now = time.monotonic()
        for proc in list(self.workers.values()):
            if proc.ready and not pid_alive(proc.pid):
                self._worker_died(proc)
            elif not proc.ready and now - proc.since > WORKER_START_TIMEOUT_S:
                log.error("worker %s did not start in %.0fs", proc.name, WORKER_START_TIMEOUT_S)
                self.host.send(proc.address, ActorExitRequest())
                self._worker_died(proc)
        for key, deadline in list(self._kill_deadlines.items()):
            where = self.hosted.get(key[0])
            if where is None or where.cell != key[1]:
                del self._kill_deadlines[key]
            elif now > deadline:
                del self._kill_deadlines[key]
                proc = self.workers.get(where.worker)
                if proc is not None and proc.pid:
                    log.error("worker %s did not end %s in time; killing it", proc.name, key[0])
                    os.kill(proc.pid, signal.SIGKILL)
        self.host.after(None, SWEEP_S, _SWEEP)

    # --- the directory --------------------------------------------------------------------

    def observe(self, msg: ChildStarted | CellExited) -> str:
        """Keep the directory; returns the supervisor of that incarnation
        ("" when it is not the one hosted now: old news)."""
        role, cell = (msg.peer.role, msg.peer.cell) if isinstance(msg, ChildStarted) else (msg.role, msg.cell)
        where = self.hosted.get(role)
        current = where is not None and where.cell == cell
        changed = False
        if isinstance(msg, ChildStarted):
            if current:  # else an incarnation its supervisor has already given up on
                self.peers[role], changed = msg.peer, True
        else:
            if current:
                del self.hosted[role]
            peer = self.peers.get(role)
            if peer is not None and peer.cell == cell:  # even when the role was started again since
                del self.peers[role]
                changed = True
        if changed:
            self._publish()
        return where.supervisor if current and where is not None else ""

    def _publish(self) -> None:
        version = max(time.time_ns() // 1000, self.host.directory.version + 1)
        directory = Directory(version, tuple(self.peers.values()))
        self.host.apply_directory(directory)
        for proc in self.workers.values():
            if proc.ready:
                self.host.send(proc.address, directory)
