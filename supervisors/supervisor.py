"""The supervisor actor: OTP semantics over the runtime's workers.

Config (in its `Init`): `children` (a list of `ChildSpec`), `strategy`,
`intensity`, `period_s`, `backoff_initial_s`, `backoff_max_s`,
`start_timeout_s`, `preload` (modules imported in the root worker before
workers are forked from it, so they share those pages and start fast), and
`root` (bool) for the top of the tree.

Every supervisor lives in the root worker (placement puts it there); its
children live wherever placement puts them. It starts, stops and kills them
through the root's `WorkerManager` and hears back `ChildStarted` and
`CellExited`, each naming the child's incarnation (`cell`): news of an
incarnation it has already replaced is ignored.

Children are started one at a time in spec order (a child's `ChildStarted`
ends its start) and stopped one at a time in reverse order (a child
supervisor first stops its own children). Start and stop operations run
from one queue, so a restart of several children never interleaves with
another.

A child that fails during start is started again after `backoff_delay`; a
child that crashes is restarted at once. Each restart counts against the
intensity; past it the supervisor stops its children and exits, and its
parent applies its own strategy. The root writes a `gave-up` marker for the
`titan run` watchdog first, which then ends the engine with a non-zero code.

A supervisor that crashes or is killed takes its children with it (they are
killed, as linked processes are in OTP), and its parent restarts it with
them. A stop that exceeds the child's `shutdown_ms` is finished with a kill.
"""

from __future__ import annotations

import collections
import importlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from supervisors.policy import (
    RESTART_TYPES,
    STRATEGIES,
    Intensity,
    backoff_delay,
    restart_scope,
    should_restart,
)
from titan_actors.messages import (
    ChildSpec,
    ChildStarted,
    Init,
    StartChild,
    StartChildResult,
    StatusReply,
    StatusRequest,
    StopTree,
    TreeStatus,
    TreeStatusRequest,
    TreeStopped,
)
from titan_actors.runtime.actor import TitanActor
from titan_actors.runtime.protocol import CellExited
from titan_actors.wire import subjects

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

_BACKOFF = "sup:backoff"
_START_TIMEOUT = "sup:start-timeout"
_STOP_TIMEOUT = "sup:stop-timeout"
_STATUS_TIMEOUT = "sup:status-timeout"


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    state: str = "stopped"  # stopped | starting | running | stopping
    cell: int = 0
    pid: int = 0
    worker: str = ""
    started_at: float = 0.0
    spawned: int = 0
    start_failures: int = 0

    @property
    def restarts(self) -> int:
        return max(self.spawned - 1, 0)


class GaveUp(Exception):
    """A supervisor that gave up ends abnormally, so its parent restarts it."""


class Supervisor(TitanActor):
    """See the module docstring."""

    def on_start(self) -> None:
        cfg = self.config
        self.strategy = cfg.get("strategy", "one_for_one")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}")
        self.intensity = Intensity(int(cfg.get("intensity", 5)), float(cfg.get("period_s", 10)))
        self.backoff = (float(cfg.get("backoff_initial_s", 0.05)), float(cfg.get("backoff_max_s", 2.0)))
        self.start_timeout_s = float(cfg.get("start_timeout_s", 15))
        self.is_root = bool(cfg.get("root", False))
        self.children: dict[str, _Child] = {}
        self.ops: collections.deque[tuple[str, Any]] = collections.deque()
        self.current: tuple[str, str, int] | None = None
        self._gen = 0
        self._stop_asker: Any = None
        self._status_waits: dict[str, dict[str, Any]] = {}
        self.gave_up = False
        self._exiting = False
        assert self.worker is not None and self.worker.manager is not None, "supervisors live in root"
        self.manager = self.worker.manager
        for module in cfg.get("preload", ()):
            importlib.import_module(module)
        for spec in cfg.get("children", ()):
            self._add_child(spec)
        # In memory: a supervisor forks, so it opens no store; the source names
        # this incarnation so that seqs never repeat under one source.
        self.open_outbox(None, f"{self.role}@{int(self.started_at_ms())}")
        self.ops.extend(("start", cid) for cid in self.children)
        self._advance()

    def _add_child(self, spec: ChildSpec) -> None:
        if spec.restart not in RESTART_TYPES:
            raise ValueError(f"child {spec.id}: unknown restart type {spec.restart!r}")
        self.children[spec.id] = _Child(spec)

    # --- messages ---------------------------------------------------------------

    def handle(self, msg: Any, sender: Any) -> None:
        match msg:
            case ChildStarted():
                self._on_child_started(msg)
            case CellExited():
                self._on_child_exited(msg)
            case StartChild():
                self._on_start_child(msg.spec, sender)
            case StopTree():
                self._on_stop_tree(sender)
            case TreeStopped():
                self._on_tree_stopped(msg)
            case TreeStatusRequest():
                self._collect_status(msg, sender)
            case StatusReply():
                self._on_status_reply(msg)
            case _:
                super().handle(msg, sender)

    def on_wakeup(self, payload: Any) -> None:
        kind, key, gen = payload
        if kind == _STATUS_TIMEOUT:
            self._finish_status(key)
        elif self.current is None or self.current[1:] != (key, gen):
            return  # a timer of an operation that already ended
        elif kind == _BACKOFF:
            self.current = None
            self._spawn(self.children[key])
        elif kind == _START_TIMEOUT:
            log.error("%s: child %s did not start in %.1fs; killing it", self.role, key, self.start_timeout_s)
            self._kill(self.children[key])
        elif kind == _STOP_TIMEOUT:
            log.error("%s: child %s did not stop in time; killing it", self.role, key)
            self._kill(self.children[key])
        self._advance()

    # --- the operation queue ----------------------------------------------------

    def _advance(self) -> None:
        while self.current is None and self.ops:
            op, arg = self.ops.popleft()
            if op == "reply":
                self._reply_stopped(arg)
                continue
            if op == "exit":
                self._exit()
                return
            child = self.children.get(arg)
            if child is None:
                continue
            if op == "forget" and child.state == "stopped":
                del self.children[arg]
            elif op == "start" and child.state == "stopped":
                self._start(child)
            elif op == "stop" and child.state in ("starting", "running"):
                self._terminate(child)

    def _begin(self, kind: str, child: _Child, timer: str, seconds: float) -> None:
        self._gen += 1
        self.current = (kind, child.spec.id, self._gen)
        self.after(seconds, (timer, child.spec.id, self._gen))

    def _end(self, cid: str) -> None:
        if self.current is not None and self.current[1] == cid:
            self.current = None

    def _start(self, child: _Child) -> None:
        delay = backoff_delay(child.start_failures, initial_s=self.backoff[0], max_s=self.backoff[1])
        if delay > 0:
            self._begin("wait", child, _BACKOFF, delay)
            return
        self._spawn(child)

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        child.state, child.spawned = "starting", child.spawned + 1
        self._begin("start", child, _START_TIMEOUT, self.start_timeout_s)
        assert self.engine is not None
        init = Init(role=spec.id, engine=self.engine, config=spec.config, restarts=child.restarts,
                    directory=self.directory)
        child.cell = self.manager.start_cell(spec, init, self.role)

    def _terminate(self, child: _Child) -> None:
        child.state = "stopping"
        self._begin("stop", child, _STOP_TIMEOUT, child.spec.shutdown_ms / 1000)
        if child.spec.kind == "supervisor":
            self.tell(child.spec.id, StopTree("parent stops"))
        else:
            self.manager.stop_cell(child.spec.id, child.cell)

    def _kill(self, child: _Child) -> None:
        self.manager.kill_cell(child.spec.id, child.cell, "killed")

    # --- children coming and going ------------------------------------------------

    def _on_child_started(self, msg: ChildStarted) -> None:
        child = self.children.get(msg.peer.role)
        if child is None or child.state != "starting" or child.cell != msg.peer.cell:
            return
        child.state, child.pid, child.started_at = "running", msg.peer.pid, msg.started_at
        child.worker = msg.peer.worker
        child.start_failures = 0
        self._actor_event("ActorRestarted" if child.restarts else "ActorStarted", child, "started")
        self._end(child.spec.id)
        self._advance()

    def _actor_event(self, kind: str, child: _Child, reason: str) -> None:
        assert self.outbox is not None
        self.outbox.emit(subjects.SYSTEM_ACTOR, kind, None, {
            "role": child.spec.id, "pid": child.pid, "worker": child.worker, "restarts": child.restarts,
            "reason": reason, "supervisor": self.role,
        })

    def _on_child_exited(self, msg: CellExited) -> None:
        child = self.children.get(msg.role)
        if child is None or child.cell != msg.cell or child.state == "stopped":
            return
        was = child.state
        reason = msg.reason
        if was == "stopping":
            reason = "stopped"
        elif was == "starting" and reason != "normal":
            reason = "failed at start"
        self._actor_event("ActorExited", child, reason)
        child.state, child.cell, child.pid = "stopped", 0, 0
        self._end(child.spec.id)
        if was != "stopping" and not self._stopping:
            self._on_failure(child, at_start=was == "starting" and reason != "normal",
                             normal=reason == "normal")
        self._advance()

    @property
    def _stopping(self) -> bool:
        return self._stop_asker is not None or self.gave_up or self._exiting

    def release(self) -> None:
        """Our children die with us, as linked processes do in OTP."""
        self._exiting = True
        for child in reversed(list(self.children.values())):
            if child.state != "stopped" and child.cell:
                self.manager.kill_cell(child.spec.id, child.cell, "supervisor died")
                child.state, child.cell = "stopped", 0

    def _on_failure(self, child: _Child, *, at_start: bool, normal: bool = False) -> None:
        cid = child.spec.id
        if at_start:
            child.start_failures += 1
        log.warning("%s: child %s exited (%s)", self.role, cid, "at start" if at_start else "crash")
        if not should_restart(child.spec.restart, normal_exit=normal):
            if child.spec.restart == "temporary":
                del self.children[cid]
            return
        if not self.intensity.record(time.monotonic()):
            self._give_up(f"more than {self.intensity.intensity} restarts in {self.intensity.period_s}s")
            return
        scope = restart_scope(self.strategy, list(self.children), cid)
        for other in reversed(scope):
            if other != cid:
                self.ops.append(("stop", other))
        for sibling in scope:
            if sibling != cid and self.children[sibling].spec.restart == "temporary":
                self.ops.append(("forget", sibling))
            else:
                self.ops.append(("start", sibling))

    def _give_up(self, reason: str) -> None:
        log.critical("%s gives up: %s", self.role, reason)
        self.gave_up, self.state = True, "gave_up"
        self.ops.clear()
        if self.current is not None and self.current[0] == "wait":
            self.current = None
        self.ops.extend(("stop", cid) for cid in reversed(self.children))
        self.ops.append(("exit", None))
        if self.is_root:
            marker = self.config.get("gave_up_marker")
            if marker:
                with open(marker, "w", encoding="utf-8") as fh:
                    fh.write(reason + "\n")

    def _exit(self) -> None:
        """Giving up is an abnormal exit: the parent applies its strategy."""
        raise GaveUp(f"{self.role} gave up")

    def _on_start_child(self, spec: ChildSpec, asker: Any) -> None:
        if spec.id in self.children:
            self.tell(asker, StartChildResult(spec.id, True, already=True))
            return
        if self._stopping:
            self.tell(asker, StartChildResult(spec.id, False, reason="supervisor is stopping"))
            return
        try:
            self._add_child(spec)
        except ValueError as exc:
            self.tell(asker, StartChildResult(spec.id, False, reason=str(exc)))
            return
        self.ops.append(("start", spec.id))
        self.tell(asker, StartChildResult(spec.id, True))
        self._advance()

    # --- orderly stop -------------------------------------------------------------

    def _on_stop_tree(self, asker: Any) -> None:
        self._stop_asker = asker
        self.state = "stopping"
        self.ops.clear()
        if self.current is not None and self.current[0] == "wait":
            self.current = None
        self.ops.extend(("stop", cid) for cid in reversed(self.children))
        self.ops.append(("reply", asker))
        self._advance()

    def _on_tree_stopped(self, msg: TreeStopped) -> None:
        child = self.children.get(msg.role)
        if child is not None and child.state == "stopping" and child.cell:
            self.manager.stop_cell(child.spec.id, child.cell)

    def _reply_stopped(self, asker: Any) -> None:
        stopped = tuple(cid for cid, c in self.children.items() if c.state == "stopped")
        self.tell(asker, TreeStopped(self.role, stopped), via="thespian")

    def on_directory(self) -> None:
        self._reask_status()

    def _reask_status(self) -> None:
        """A status collection waiting on a role that just restarted asks the
        new incarnation instead of waiting out the timeout on the dead one."""
        for req_id, wait in self._status_waits.items():
            for role in wait["waiting"]:
                peer = self.directory.get(role)
                if peer is not None and wait["asked"].get(role) != peer.cell:
                    wait["asked"][role] = peer.cell
                    self.tell(role, StatusRequest(req_id), via="thespian")

    # --- status -------------------------------------------------------------------

    def status_detail(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "intensity": {"max": self.intensity.intensity, "period_s": self.intensity.period_s,
                          "recent": len(self.intensity)},
            "children": [
                {"id": c.spec.id, "state": c.state, "pid": c.pid, "worker": c.worker, "restarts": c.restarts,
                 "restart": c.spec.restart, "start_failures": c.start_failures}
                for c in self.children.values()
            ],
            "gave_up": self.gave_up,
        }

    def _collect_status(self, msg: TreeStatusRequest, asker: Any) -> None:
        req_id = uuid.uuid4().hex
        waiting = {p.role for p in self.directory.peers if p.role != self.role}
        asked = {p.role: p.cell for p in self.directory.peers if p.role != self.role}
        self._status_waits[req_id] = {"asker": asker, "waiting": waiting, "replies": [self.status()],
                                      "asker_req": msg.req_id, "asked": asked}
        for role in waiting:
            self.tell(role, StatusRequest(req_id), via="thespian")
        if waiting:
            self.after(msg.timeout_s, (_STATUS_TIMEOUT, req_id, 0))
        else:
            self._finish_status(req_id)

    def _on_status_reply(self, reply: StatusReply) -> None:
        wait = self._status_waits.get(reply.req_id)
        if wait is None:
            return
        wait["replies"].append(reply)
        wait["waiting"].discard(reply.role)
        if not wait["waiting"]:
            self._finish_status(reply.req_id)

    def _finish_status(self, req_id: str) -> None:
        wait = self._status_waits.pop(req_id, None)
        if wait is None:
            return
        tree = TreeStatus(
            state=self.state,
            directory_version=self.directory.version,
            actors=tuple(wait["replies"]),
            missing=tuple(sorted(wait["waiting"])),
            gave_up=self.gave_up,
            req_id=wait["asker_req"],
        )
        self.tell(wait["asker"], tree, via="thespian")
