"""A worker: one OS process, started through thespian, that hosts actors on
one loop.

Every actor of a worker runs on that worker's loop thread (`ActorLoop`),
one message at a time: its lanes, the actors' sockets and timers, and the
messages the actors tell each other. Between actors of one worker a message
is handed over in memory, in order, with no pickling and no system call;
to another worker it goes on that worker's FastLane (one per process), or
on thespian (`Routed`) when no lane opens. Thespian's thread keeps the
control plane (start, stop and kill of actors, the directory, outside
askers) and runs it under the loop's lock.

The root worker is different in two ways: it runs no thread of its own
(thespian's thread is its loop), because it is the one process that forks
the other workers; and it owns the `WorkerManager` (placement, the worker
processes, the directory). It hosts the supervisors.

Failure: an exception out of an actor is a crash of that actor only (see
`runtime.actor`): its mailbox, timers and memory are dropped, its stores
closed, and its supervisor told (`CellExited`). An exception out of the
worker's own code ends the process (exit 70): every actor in it has crashed,
and the root restarts the worker when their supervisors restart them. A
worker whose parent dies is killed by the kernel (`PR_SET_PDEATHSIG`).
"""

from __future__ import annotations

import collections
import gc
import importlib
import logging
import os
import time
import traceback
from datetime import timedelta
from typing import Any

from thespian.actors import (
    Actor,
    ActorExitRequest,
    ChildActorExited,
    PoisonMessage,
    ThespianWatch,
    WakeupMessage,
    WatchMessage,
)

from titan_actors.messages import ChildStarted, Directory, GetDirectory, Peer
from titan_actors.runtime.actor import ActorKilled, TitanActor
from titan_actors.runtime.aiohost import AsyncHost
from titan_actors.runtime.lanes import LaneHub
from titan_actors.runtime.logs import install_context
from titan_actors.runtime.loop import ActorLoop
from titan_actors.runtime.placement import ROOT_WORKER
from titan_actors.runtime.procs import (
    CRASH_EXIT_CODE,
    set_parent_death_signal,
    set_process_name,
)
from titan_actors.runtime.protocol import (
    CellExited,
    KillCell,
    KillRole,
    Routed,
    StartCell,
    StopCell,
    WorkerInit,
    WorkerStarted,
)
from titan_actors.runtime.trace import TRACE, trace

__all__ = ["LAZY_S", "WORKER_CLASS", "Worker"]

log = logging.getLogger(__name__)

WORKER_CLASS = "titan_actors.runtime.worker.Worker"
#: How long a message that is not urgent (acknowledgements, events on their way
#: to NATS, deliveries to position actors) may wait to share a write with others.
LAZY_S = 0.005
_FLUSH = "flush"
_LAZY = "lazy"
#: Rounds of in-memory delivery in one wake before the loop serves its fds again.
_MAX_ROUNDS = 64


def _import(path: str) -> type[TitanActor]:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, TitanActor)):
        raise TypeError(f"{path} is not a TitanActor")
    return cls


class Worker(Actor):
    """See the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = ""
        self.engine: Any = None
        self.placement: Any = None
        self.directory = Directory(0, ())
        self.cells: dict[str, TitanActor] = {}
        self.inbox: collections.deque[tuple[str, Any, Any, str]] = collections.deque()
        self._generation: collections.deque[tuple[str, Any, Any, str]] | None = None
        self.touched: dict[str, TitanActor] = {}
        self.lanes: LaneHub | None = None
        self.loop: ActorLoop | None = None
        self.parent_address: Any = None
        self.manager: Any = None
        self._fd_owner: dict[int, TitanActor] = {}
        self._flush_pending = False
        self._lazy_armed = False

    # --- thespian's thread ------------------------------------------------------------

    def receiveMessage(self, msg: Any, sender: Any) -> ThespianWatch | None:
        if isinstance(msg, WorkerInit):
            self._boot(msg, sender)
        elif isinstance(msg, ActorExitRequest):
            self._exit()
            return None
        elif isinstance(msg, WatchMessage) and self.loop is not None:
            pass  # the one fd thespian watches for us: deferred sends, run below
        elif self.loop is not None:
            with self.loop.lock:
                self._control(msg, sender)
                self._drain()
                self.flush_lanes()
            self.loop.poke()  # fds or timers may have changed
        else:
            self._control(msg, sender)
            self._drain()
        if self.loop is not None:
            self.loop.run_deferred()
            return ThespianWatch([self.loop.thespian_fd()])
        return None

    def _boot(self, init: WorkerInit, sender: Any) -> None:
        if self.engine is not None:
            return
        set_parent_death_signal()
        if init.parent_pid and os.getppid() != init.parent_pid:
            os._exit(CRASH_EXIT_CODE)  # our parent died between fork and now
        self.name, self.engine, self.placement = init.name, init.engine, init.placement
        set_process_name(f"t:{init.name}")
        install_context(init.name)
        if init.directory is not None:
            self.directory = init.directory
        if init.name == ROOT_WORKER:
            from titan_actors.runtime.manager import WorkerManager

            self.manager = WorkerManager(self)
        else:
            self.parent_address = sender
            self.lanes = LaneHub(engine_id=init.engine.engine_id, role=init.name)
            self.loop = ActorLoop(name=init.name, fds=self._fds, serve=self._serve, fire=self._fire,
                                  after_wake=self._after_wake, crash=self._worker_crash)
        if init.first is not None:
            if self.manager is not None:
                self.manager.register_root(init.first)
            self.start_cell(init.first, reply_to=sender)
            self._drain()
            self.flush_lanes()
        else:
            self.send(sender, WorkerStarted(init.name, os.getpid(), self.lanes.name if self.lanes else None,
                                            os.getpgid(0)))
        if self.loop is not None:
            self.loop.start()

    def _control(self, msg: Any, sender: Any) -> None:
        match msg:
            case Routed():
                self._enqueue(msg.dst, msg.src if msg.src is not None else sender, msg.msg, "thespian")
            case Directory():
                self.apply_directory(msg)
            case GetDirectory():
                self.send(sender, self.directory)
            case StartCell():
                self.start_cell(msg)
            case StopCell():
                self.stop_cell(msg.role, msg.cell)
            case KillCell():
                self.kill_cell(msg.role, msg.cell, msg.reason)
            case WakeupMessage():
                self._fire(msg.payload)
            case WorkerStarted() | ChildActorExited() | KillRole() if self.manager is not None:
                self.manager.receive(msg, sender)
            case PoisonMessage():
                log.error("worker %s: a peer could not handle %s", self.name,
                          type(msg.poisonMessage).__name__)
            case _:
                # From outside (the engine, the CLI): to the worker's only actor, or the root's supervisor.
                dst = ROOT_WORKER if self.manager is not None else next(iter(self.cells), None)
                if dst is None or (self.manager is None and len(self.cells) != 1):
                    log.warning("worker %s: %s for no actor; dropped", self.name, type(msg).__name__)
                    return
                self._enqueue(dst, sender, msg, "thespian")

    def _exit(self) -> None:
        """Thespian stops the worker: every actor stops in reverse start order."""
        loop, self.loop = self.loop, None
        if loop is not None:
            loop.run_deferred()
            loop.stop()  # no handler runs on the loop past this point
        for cell in reversed(list(self.cells.values())):
            try:
                cell.stop()
            except Exception:
                log.exception("worker %s: %s failed to stop", self.name, cell.role)
        self.cells.clear()
        if loop is not None:
            loop.drain_tasks()  # connections the actors closed on their way out
        if self.lanes is not None:
            self.lanes.close()
            self.lanes = None

    # --- actors coming and going ----------------------------------------------------------

    def start_cell(self, sc: StartCell, *, reply_to: Any = None) -> None:
        role = sc.init.role
        old = self.cells.get(role)
        if old is not None:
            self._drop(old)  # a late start of an incarnation its supervisor has replaced
        try:
            cell = _import(sc.actor)()
        except Exception:
            log.exception("worker %s: cannot create %s (%s)", self.name, role, sc.actor)
            self._to_supervisor(sc.supervisor, CellExited(role, sc.cell, "failed at start", sc.supervisor))
            return
        self.cells[role] = cell
        try:
            cell.boot(sc.init, self, supervisor=sc.supervisor, cell=sc.cell)
        except (Exception, ActorKilled):
            self._crash(cell, "Init", reason="failed at start")
            return
        self.touched[role] = cell
        gc.freeze()  # what start built lives as long as the actor: full collections need not scan it
        started = ChildStarted(self.peer_of(cell), cell.started_at)
        if reply_to is not None:
            if self.manager is not None:
                self.manager.observe(started)
            self.send(reply_to, started)
        else:
            self._to_supervisor(sc.supervisor, started)

    def stop_cell(self, role: str, cell_id: int, reason: str = "stopped") -> None:
        cell = self.cells.get(role)
        if cell is None or cell.cell != cell_id:
            self._to_supervisor_of(role, cell_id, reason)
            return
        del self.cells[role]
        self._forget(role)
        try:
            cell.stop()
        except Exception:
            log.exception("worker %s: %s failed to stop", self.name, role)
        self._to_supervisor(cell.supervisor, CellExited(role, cell.cell, reason, cell.supervisor))

    def kill_cell(self, role: str, cell_id: int, reason: str = "killed") -> None:
        cell = self.cells.get(role)
        if cell is None or cell.cell != cell_id:
            self._to_supervisor_of(role, cell_id, reason)
            return
        self._crash(cell, reason, reason=reason, trace=False)

    def _to_supervisor_of(self, role: str, cell_id: int, reason: str) -> None:
        """A stop or kill of an actor this worker no longer hosts: say it is gone."""
        if self.manager is not None:
            self.manager.gone(role, cell_id, reason)
        elif self.parent_address is not None:
            self.send(self.parent_address, Routed("", None, CellExited(role, cell_id, reason)))

    def _crash(self, cell: TitanActor, what: Any, *, reason: str = "crashed", trace: bool = True) -> None:
        """Let it crash: record what failed, drop the actor, tell its supervisor."""
        name = what if isinstance(what, str) else type(what).__name__
        text = traceback.format_exc() if trace else f"{reason}\n"
        line = (f"{time.time():.3f} pid={os.getpid()} role={cell.role} message={name} "
                f"worker={self.name}\n{text}")
        try:
            path = os.path.join(self.engine.data_dir, "logs", "crash.log")
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass
        log.critical("actor %s %s on %s:\n%s", cell.role, reason, name, text)
        self._drop(cell)
        if self.manager is not None and cell.role == ROOT_WORKER:
            # The root supervisor: the whole tree goes, and the watchdog starts it again.
            os._exit(CRASH_EXIT_CODE)
        self._to_supervisor(cell.supervisor, CellExited(cell.role, cell.cell, reason, cell.supervisor))

    def _drop(self, cell: TitanActor) -> None:
        if self.cells.get(cell.role) is cell:
            del self.cells[cell.role]
        self._forget(cell.role)
        try:
            cell.abandon()
        except Exception:
            log.exception("worker %s: %s did not release cleanly", self.name, cell.role)

    def _forget(self, role: str) -> None:
        """The actor's mailbox goes with it: what waits for it in the
        generation being delivered and in the next."""
        self.touched.pop(role, None)
        for queue in (self.inbox, self._generation):
            if queue is not None and any(item[0] == role for item in queue):
                kept = [item for item in queue if item[0] != role]
                queue.clear()
                queue.extend(kept)

    def _to_supervisor(self, supervisor: str, msg: ChildStarted | CellExited) -> None:
        src = msg.peer.role if isinstance(msg, ChildStarted) else msg.role
        if self.manager is not None:
            self._enqueue(supervisor, src, msg, "memory")
        elif self.parent_address is not None:
            self._send_thespian(self.parent_address, Routed(supervisor, src, msg))

    # --- delivery -----------------------------------------------------------------------

    def async_host(self, cell: TitanActor) -> AsyncHost:
        """`cell`'s view of this worker's asyncio loop."""
        assert self.loop is not None, "asyncio clients run in workers with a loop, not in root"

        def guard(fn: Any, *args: Any) -> None:
            if self.cells.get(cell.role) is cell:
                self._run(cell, getattr(fn, "__name__", "async result"), fn, *args)

        return AsyncHost(self.loop, guard)

    def peer_of(self, cell: TitanActor) -> Peer:
        return Peer(role=cell.role, address=self.myAddress, pid=os.getpid(),
                    lane=self.lanes.name if self.lanes is not None else None,
                    host=self.engine.host, pgid=os.getpgid(0), worker=self.name, cell=cell.cell)

    def tell(self, src: str, peer: Any, msg: Any, *, via: str, urgent: bool) -> bool:
        if not isinstance(peer, str):
            self._send_thespian(peer, msg)
            return True
        if peer in self.cells:
            self.inbox.append((peer, src, msg, "memory"))
            return True
        target = self.directory.get(peer)
        if target is None or target.pid == os.getpid():
            log.warning("%s: no address for role %s; %s dropped", src, peer, type(msg).__name__)
            return False
        if (
            via == "lane"
            and target.lane
            and self.lanes is not None
            and target.host == self.engine.host
            and self.lanes.send(target.lane, src, peer, msg, urgent=urgent)
        ):
            return True
        self._send_thespian(target.address, Routed(peer, src, msg))
        return True

    def _send_thespian(self, address: Any, msg: Any) -> None:
        """Thespian's transport belongs to its thread: from the loop, hand it over."""
        if self.loop is not None and self.loop.in_loop():
            self.loop.defer(self.send, address, msg)
        else:
            self.send(address, msg)

    def _enqueue(self, dst: str, src: Any, msg: Any, transport: str) -> None:
        if self.manager is not None and isinstance(msg, ChildStarted | CellExited):
            # The manager keeps the directory, and knows the supervisor when the sender did not.
            supervisor = self.manager.observe(msg)
            dst = dst or supervisor
            if not dst:
                return  # news of an incarnation nobody supervises any more
        self.inbox.append((dst, src, msg, transport))

    def _drain(self) -> None:
        """Deliver in generations: the messages queued now go to their actors;
        each actor that handled something finishes its batch (`end_of_batch`:
        persists, writes the answers it owes on its sockets; then acknowledges
        and sends), and the lanes are written; then the messages that told,
        and so on. So an answer leaves one generation after what it
        answers (a CONFIRM's ACCEPTED right after the adapter's journal), not
        after everything it set off in this worker (fills, positions, events)."""
        for _ in range(_MAX_ROUNDS):
            if not self.inbox and not self.touched:
                break
            generation, self.inbox = self.inbox, collections.deque()
            self._generation = generation
            while generation:
                dst, src, msg, transport = generation.popleft()
                cell = self.cells.get(dst)
                if cell is not None:
                    self._run(cell, msg, cell.dispatch, msg, src, transport)
            self._generation = None
            touched, self.touched = self.touched, {}
            for role, cell in touched.items():
                if self.cells.get(role) is cell:
                    self._run(cell, "end of batch", cell.after_handlers, mark=False)
            self.flush_lanes()
        else:
            if self.loop is not None:
                self.loop.poke()  # more to do: come back after serving the fds

    def _run(self, cell: TitanActor, what: Any, fn: Any, *args: Any, mark: bool = True) -> Any:
        if mark:
            self.touched[cell.role] = cell
        try:
            result = fn(*args)
        except ActorKilled:
            self._crash(cell, what, reason="killed", trace=False)
        except Exception:
            self._crash(cell, what)
        else:
            if cell.exiting and self.cells.get(cell.role) is cell:
                self.stop_cell(cell.role, cell.cell, "normal")
            return result
        return None

    def apply_directory(self, directory: Directory) -> None:
        if directory.version < self.directory.version:
            return
        old, self.directory = self.directory, directory
        if self.lanes is not None:
            live = {p.lane for p in directory.peers if p.lane}
            for name in self.lanes.lanes():
                if name not in live:
                    self.lanes.forget(name)
        for cell in list(self.cells.values()):
            self._run(cell, directory, cell.directory_changed, old)

    # --- timers ---------------------------------------------------------------------------

    def after(self, cell: TitanActor | None, seconds: float, payload: Any) -> None:
        key = (cell.role, cell.cell, payload) if cell is not None else ("", 0, payload)
        if self.loop is not None:
            self.loop.after(seconds, key)
        else:
            self.wakeupAfter(timedelta(seconds=seconds), payload=key)

    def _fire(self, key: Any) -> None:
        role, cell_id, payload = key
        if not role:
            if payload == _FLUSH:
                self._flush_pending = False
                self.flush_lanes()
            elif payload == _LAZY:
                self._lazy_armed = False
                if self.lanes is not None:
                    self.lanes.flush(lazy_too=True)
                self.flush_lanes()
            elif self.manager is not None:
                self.manager.fire(payload)
            return
        cell = self.cells.get(role)
        if cell is not None and cell.cell == cell_id:
            self._run(cell, f"timer {payload!r}"[:80], cell.fire, payload)

    def flush_lanes(self) -> None:
        if self.lanes is None:
            return
        if self.touched and self.lanes.urgent():
            # Written in the middle of a batch (`reply_now`): what the actors
            # of this batch wrote is synced before their messages leave.
            for cell in list(self.touched.values()):
                cell.sync_stores(durable_only=True)
            if TRACE:
                trace("lane_write", worker=self.name)
        if not self.lanes.flush() and not self._flush_pending:
            # The peer's socket buffer is full: try again shortly, keep serving meanwhile.
            self._flush_pending = True
            self.after(None, 0.001, _FLUSH)
        if not self._lazy_armed and self.lanes.holding():
            self._lazy_armed = True
            self.after(None, LAZY_S, _LAZY)

    # --- the loop's callbacks (its thread, under its lock) ---------------------------------

    def _fds(self) -> list[int]:
        owner: dict[int, TitanActor] = {}
        for cell in list(self.cells.values()):
            for fd in self._run(cell, "watch_fds", cell.watch_fds, mark=False) or ():
                owner[fd] = cell
        self._fd_owner = owner
        return (self.lanes.fds() if self.lanes is not None else []) + list(owner)

    def _serve(self, ready: list[int]) -> None:
        if self.lanes is not None:
            for src, dst, msg in self.lanes.read(ready):
                self.inbox.append((dst, src, msg, "lane"))
        for fd in ready:
            cell = self._fd_owner.get(fd)
            if cell is not None and self.cells.get(cell.role) is cell:
                self._run(cell, f"fd {fd}", cell.on_watch, fd)

    def _after_wake(self) -> None:
        self._drain()  # what the fds and timers of this wake brought
        # Every actor, not only those the drain touched: a socket that was full
        # at its last write is written again now (the gateway's replies).
        for cell in list(self.cells.values()):
            self._run(cell, "before_wait", cell.before_wait, mark=False)

    def _worker_crash(self, what: str) -> None:
        """The worker's own code failed: every actor in it has crashed."""
        log.critical("worker %s crashed in %s:\n%s", self.name, what, traceback.format_exc())
        os._exit(CRASH_EXIT_CODE)
