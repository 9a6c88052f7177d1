"""The messages of the runtime itself: between the root worker (which owns
placement, the workers and the directory) and the workers it starts, and the
envelope that carries an actor's message to its worker.

Commands are imperative (`StartCell`, `StopCell`, `KillCell`), events past
tense (`WorkerStarted`, `CellExited`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from titan_actors.messages import Directory, EngineInfo, Init
from titan_actors.runtime.placement import Placement

__all__ = [
    "CellExited",
    "KillCell",
    "KillRole",
    "Routed",
    "StartCell",
    "StopCell",
    "WorkerInit",
    "WorkerStarted",
]


@dataclass(frozen=True, slots=True)
class WorkerInit:
    """First message to a worker process. The root worker also gets the
    root supervisor's `StartCell` in `first`, and answers with its
    `ChildStarted`; other workers answer `WorkerStarted`."""

    name: str
    engine: EngineInfo
    placement: Placement
    parent_pid: int
    directory: Directory | None = None
    first: StartCell | None = None


@dataclass(frozen=True, slots=True)
class WorkerStarted:
    name: str
    pid: int
    lane: str | None
    pgid: int


@dataclass(frozen=True, slots=True)
class StartCell:
    """Host the actor `actor` (dotted class path) with `init`; its
    `ChildStarted` (or `CellExited` "failed at start") goes to `supervisor`."""

    actor: str
    init: Init
    supervisor: str
    cell: int


@dataclass(frozen=True, slots=True)
class StopCell:
    """Orderly stop: `on_stop`, stores closed, then `CellExited` "stopped"."""

    role: str
    cell: int


@dataclass(frozen=True, slots=True)
class KillCell:
    """Abrupt end, as SIGKILL would be for a process of its own: mailbox and
    memory dropped, no `on_stop`; then `CellExited` "killed"."""

    role: str
    cell: int
    reason: str = "killed"


@dataclass(frozen=True, slots=True)
class CellExited:
    """An actor is gone. `reason`: `stopped`, `normal`, `crashed`, `killed`,
    `failed at start` or `worker died`."""

    role: str
    cell: int
    reason: str
    supervisor: str = ""


@dataclass(frozen=True, slots=True)
class Routed:
    """An actor's message on thespian: to role `dst` in the receiving worker,
    from role `src` (None: from outside, answer the thespian sender)."""

    dst: str
    src: str | None
    msg: Any


@dataclass(frozen=True, slots=True)
class KillRole:
    """To the root worker: end the actor `role` abruptly wherever it runs
    (`titan kill ROLE`), or SIGKILL its worker with `worker=True`."""

    role: str
    worker: bool = False
