"""The base of every Titan actor: a role with a mailbox, hosted by a worker.

An actor never knows which process it runs in. Its worker (`runtime.worker`)
hands it its messages one at a time, on the worker's one loop, and carries
what it `tell`s: in memory to an actor of the same worker, on a FastLane to
another worker, on thespian when neither works.

Subclasses implement `on_start()` (may raise: that is a failure at start),
`handle(msg, sender)` for their own messages, and optionally `on_stop()`,
`release()`, `on_directory()`, `on_watch(fd)`, `on_wakeup(payload)`,
`status_detail()`, `watch_fds()`, `before_wait()` and `end_of_batch()`.

`sender` in `handle` is the peer's role (a `str`) when the peer is one of
ours, whichever transport the message came by, else the thespian address of
an outside asker. `self.tell(sender, reply)` answers either way.

Failure: an exception out of any hook is a crash of this actor only. The
worker writes it to `<data>/logs/crash.log` with the message type and the
traceback, drops the actor's mailbox and memory, calls `release()` (close
fds and threads, nothing else), closes its stores, and tells its supervisor,
which restarts it from its store. Its neighbours in the worker go on.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
import uuid
from typing import TYPE_CHECKING, Any

from titan_actors.messages import (
    Deliver,
    Delivered,
    Directory,
    EngineInfo,
    EventsStored,
    Init,
    InjectFault,
    LaneFlood,
    LaneFloodDone,
    Peer,
    Ping,
    Pong,
    Relay,
    RelayResult,
    StatusReply,
    StatusRequest,
)
from titan_actors.runtime.clock import now_ms
from titan_actors.runtime.logs import handled, handling
from titan_actors.runtime.outbox import Deliveries, Outbox
from titan_actors.runtime.retention import Retention
from titan_actors.runtime.store import Store

if TYPE_CHECKING:
    from titan_actors.runtime.aiohost import AsyncHost
    from titan_actors.runtime.worker import Worker

__all__ = ["ActorKilled", "TitanActor", "count_boot"]

log = logging.getLogger(__name__)

_OUTBOX_TICK = "titan:outbox"
_RETIRE_TICK = "titan:retire"
_RETIRE_FIRST_S = 5.0
_RETIRE_EVERY_S = 60.0
_RETIRE_BACKLOG_S = 0.5  # more is due: the next chunk soon, other work in between
_OUTBOX_RESEND_S = 1.0
_RELAY_TIMEOUT = "titan:relay-timeout"
_DIRECTORY = object()  # a directory change held while paused
_TIMER = object()  # a timer that fired while paused


class ActorKilled(BaseException):
    """Raised inside an actor to end it abruptly (a chaos kill, a crash point):
    a BaseException, so that no `except Exception` in actor code swallows it."""


class TitanActor:
    """See the module docstring."""

    #: Roles this actor talks to (a name ending in ":" is a prefix), shown in status.
    needs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.role = ""
        self.engine: EngineInfo | None = None
        self.config: dict[str, Any] = {}
        self.supervisor = ""
        self.cell = 0
        self.restarts = 0
        self.started_at = 0.0
        self.state = "starting"
        self.exiting = False
        self.worker: Worker | None = None
        self._acks: list[tuple[Any, Delivered]] = []
        self._relays: dict[str, tuple[Any, str]] = {}
        self._flood: dict[str, Any] = {}
        self._stores: list[Store] = []
        self._durable: list[Store] = []  # synced at the end of every batch
        self._retentions: list[Retention] = []
        self._armed: dict[str, str] = {}
        # While paused (a test's stand-in for SIGSTOP of one actor): what arrived, in order.
        self._held: list[tuple[Any, Any, str]] | None = None
        self.outbox: Outbox | None = None
        self.deliveries: Deliveries | None = None

    # --- what the worker calls ----------------------------------------------------

    def boot(self, init: Init, worker: Worker, *, supervisor: str, cell: int) -> None:
        """Start: raises when the actor cannot (a failure at start)."""
        self.role, self.engine, self.config = init.role, init.engine, dict(init.config)
        self.worker, self.supervisor, self.cell, self.restarts = worker, supervisor, cell, init.restarts
        self.on_start()
        self.on_directory()  # hooks see the first directory only once the actor is started
        self.started_at = time.time()
        if self.state == "starting":
            self.state = "running"

    @property
    def directory(self) -> Directory:
        assert self.worker is not None
        return self.worker.directory

    @property
    def parent(self) -> str:
        return self.supervisor

    def dispatch(self, msg: Any, sender: Any, transport: str) -> None:
        if self._held is not None and not isinstance(msg, InjectFault):
            self._held.append((msg, sender, transport))  # paused: as a stopped process, it reads nothing
            return
        match msg:
            case StatusRequest():
                self.tell(sender, self.status(msg.req_id), via="thespian")
            case EventsStored() if self.outbox is not None:
                self.outbox.acknowledge(msg.seqs)
            case Delivered() if self.deliveries is not None:
                self.deliveries.acknowledge(msg.seqs)
            case Deliver():
                for _seq, item in msg.items:
                    self.dispatch(item, sender, transport)
                # Acknowledged once the batch is handled, after `end_of_batch` (which
                # may be where the receiver persists what it did with the items).
                self._acks.append((sender, Delivered(msg.source, tuple(seq for seq, _item in msg.items))))
            case Ping():
                if msg.answer:
                    pong = Pong(msg.req_id, self.role, os.getpid(), msg.via, arrived_by=transport)
                    self.tell(sender, pong, via=msg.via)
            case Pong():
                self._on_pong(msg)
            case Relay():
                self._relay(msg, sender)
            case InjectFault(at="pause"):
                self._held = self._held if self._held is not None else []
                if sender is not None and not isinstance(sender, str):
                    self.tell(sender, msg)  # paused now: what the operator's tool waits for
            case InjectFault(at="resume"):
                held, self._held = self._held or [], None
                for item in held:
                    if item[0] is _DIRECTORY:
                        self.directory_changed(item[1])
                    elif item[0] is _TIMER:
                        self.fire(item[1])
                    else:
                        self.dispatch(*item)
            case InjectFault():
                if msg.at:
                    self._armed[msg.at] = msg.kill
                else:
                    raise RuntimeError(f"fault injected into {self.role}: {msg.reason}")
            case LaneFlood():
                self._flood_start(msg, sender)
            case _:
                context = handling(self.role, msg)
                try:
                    self.handle(msg, sender)
                finally:
                    handled(context)

    def after_handlers(self) -> None:
        """What a batch of handled messages leaves: persisted, acknowledged, sent."""
        if self._held is not None:
            return  # paused: as a stopped process, it does nothing
        # Group commit: one sync for everything this batch wrote, before any
        # of what it decided (answers, sends, acknowledgements) leaves.
        self.sync_stores(durable_only=True)
        if self.started_at:
            self.end_of_batch()
        acks, self._acks = self._acks, []
        for sender, ack in acks:
            self.tell(sender, ack, urgent=False)
        if self.outbox is not None:
            self.outbox.push_new(self)
        if self.deliveries is not None:
            self.deliveries.push_new(self)

    def stop(self) -> None:
        """Orderly stop: finish the last batch, `on_stop`, close the stores."""
        try:
            self.after_handlers()
            self.on_stop()
        finally:
            self.close_stores()

    def abandon(self) -> None:
        """Abrupt end: `release()` only, then the stores closed (what was
        written stays written, as after a SIGKILL)."""
        try:
            self.release()
        finally:
            self.close_stores()

    def drop_store(self, store: Store) -> None:
        """Close `store` and delete its directory: the actor is done for good
        and nothing of it is needed again (a finished algo actor)."""
        store.close()
        self._stores = [s for s in self._stores if s is not store]
        self._durable = [s for s in self._durable if s is not store]
        shutil.rmtree(store.path, ignore_errors=True)

    def close_stores(self) -> None:
        for store in self._stores:
            store.close()
        self._stores.clear()
        self._durable.clear()

    def directory_changed(self, old: Directory) -> None:
        """The worker applied a new directory: re-drive queues to restarted peers."""
        if self._held is not None:
            self._held.append((_DIRECTORY, old, ""))  # paused: seen on resume, as a stopped process would
            return
        new = self.directory
        for queue in (self.outbox, self.deliveries):
            for role in queue.destinations() if queue is not None else ():
                now, before = new.get(role), old.get(role)
                if now is not None and (before is None or before.cell != now.cell):
                    queue.push(self, only=role)  # a new receiver: hand it all not acknowledged
        if self.started_at:
            self.on_directory()

    def fire(self, payload: Any) -> None:
        if self._held is not None:
            self._held.append((_TIMER, payload, ""))
            return
        if payload == _OUTBOX_TICK:
            for queue in (self.outbox, self.deliveries):
                if queue is not None:
                    queue.push(self, resend_after_s=_OUTBOX_RESEND_S)
            self.after(_OUTBOX_RESEND_S, _OUTBOX_TICK)
        elif payload == _RETIRE_TICK:
            more = False
            for retention in self._retentions:
                more = retention.prune(now_ms()) or more
            self.after(_RETIRE_BACKLOG_S if more else _RETIRE_EVERY_S, _RETIRE_TICK)
        elif isinstance(payload, tuple) and payload and payload[0] == _RELAY_TIMEOUT:
            self._relay_timeout(payload[1])
        else:
            self.on_wakeup(payload)

    # --- what actors call -------------------------------------------------------------

    def my_peer(self) -> Peer:
        assert self.worker is not None
        return self.worker.peer_of(self)

    def tell(self, peer: Any, msg: Any, *, via: str = "lane", urgent: bool = True) -> bool:
        """Send `msg` to a role or to a thespian address (an outside asker).

        To a role of this worker: in memory, in order. To another worker: on a
        FastLane when `via="lane"` and one opens, else on thespian. A message
        that is not `urgent` may wait up to `LAZY_S` on its lane to share a
        write. Returns False when the role is not in the directory (nothing
        was sent).
        """
        assert self.worker is not None
        return self.worker.tell(self.role, peer, msg, via=via, urgent=urgent)

    def reply_now(self, peer: Any, msg: Any) -> bool:
        """`tell`, then write the lanes at once: the answer a peer waits for
        leaves before the rest of this handler's work (reports, events)."""
        sent = self.tell(peer, msg)
        assert self.worker is not None
        self.worker.flush_lanes()
        return sent

    def async_host(self) -> AsyncHost:
        """This actor's view of its worker's asyncio loop (nats-py, ccxt)."""
        assert self.worker is not None
        return self.worker.async_host(self)

    def after(self, seconds: float, payload: Any) -> None:
        """Deliver `payload` to `on_wakeup` in about `seconds` (never earlier)."""
        assert self.worker is not None
        self.worker.after(self, seconds, payload)

    def exit_normally(self) -> None:
        """Stop this actor on purpose (OTP `normal`) once the current hook
        returns: a transient child is not restarted."""
        self.exiting = True

    def open_store(self, relpath: str, *, durable: bool = True) -> Store:
        """Open this actor's RocksDB directory `<data>/<relpath>`; closed on stop.

        A `durable` store is synced at the end of every batch that wrote to it,
        before what the batch decided leaves (group commit); the others only
        when the actor calls `sync_stores` (and at close)."""
        assert self.engine is not None
        store = Store(os.path.join(self.engine.data_dir, relpath), fsync=self.engine.fsync)
        self._stores.append(store)
        if durable:
            self._durable.append(store)
        return store

    def open_retention(self, store: Store, prefix: bytes = b"ret:") -> Retention:
        """Retire keys of `store` after the engine's retention (`[engine]
        retention_days`): add `retention.index(ts, keys)` to a write; they
        are deleted a chunk at a time by a timer of this actor."""
        assert self.engine is not None
        retention = Retention(store, prefix, self.engine.retention_ms)
        if not self._retentions:
            self.after(_RETIRE_FIRST_S, _RETIRE_TICK)
        self._retentions.append(retention)
        return retention

    def sync_stores(self, *, durable_only: bool = False) -> None:
        """Make what this actor wrote so far survive a power loss (see `Store.sync`)."""
        for store in self._durable if durable_only else self._stores:
            store.sync()

    def open_outbox(self, store: Store | None, source: str | None = None) -> Outbox:
        """Events of this actor, kept in `store` until the NATS bridge has them."""
        self.outbox = Outbox(store, source or self.role)
        if self.deliveries is None:
            self.after(_OUTBOX_RESEND_S, _OUTBOX_TICK)
        return self.outbox

    def open_deliveries(self, store: Store) -> Deliveries:
        """Messages of this actor that must reach their receiver, kept in `store`."""
        self.deliveries = Deliveries(store, self.role)
        if self.outbox is None:
            self.after(_OUTBOX_RESEND_S, _OUTBOX_TICK)
        return self.deliveries

    def started_at_ms(self) -> int:
        return now_ms() if not self.started_at else int(self.started_at * 1000)

    def crash_point(self, name: str) -> None:
        """If a chaos test armed this point: SIGKILL this actor's worker here
        (every actor of it dies at this moment), or end this actor alone."""
        kill = self._armed.get(name)
        if kill is None:
            return
        log.warning("%s: crash point %s reached; killing the %s", self.role, name, kill)
        if kill == "actor":
            raise ActorKilled(f"crash point {name}")
        os.kill(os.getpid(), signal.SIGKILL)

    # --- status -----------------------------------------------------------------

    def status(self, req_id: str = "") -> StatusReply:
        detail: dict[str, Any] = {"directory_version": self.directory.version,
                                  "peers": self.known_peers(), "cell": self.cell}
        if self.outbox is not None:
            detail["outbox_depth"] = self.outbox.depth
        if self.deliveries is not None:
            detail["deliveries_depth"] = self.deliveries.depth
        detail.update(self.status_detail())
        return StatusReply(
            role=self.role,
            pid=os.getpid(),
            started_at=self.started_at,
            restarts=self.restarts,
            state=self.state,
            detail=detail,
            req_id=req_id,
            worker=self.worker.name if self.worker is not None else "",
        )

    def known_peers(self) -> dict[str, int]:
        """The peers this actor needs that the directory has now: role → pid."""
        return {
            p.role: p.pid
            for p in self.directory.peers
            if any(p.role == n or (n.endswith(":") and p.role.startswith(n)) for n in self.needs)
        }

    # --- diagnostics: a ping through the directory ------------------------------

    def _relay(self, msg: Relay, asker: Any) -> None:
        self._relays[msg.req_id] = (asker, msg.target)
        if not self.tell(msg.target, Ping(msg.req_id, msg.via), via=msg.via):
            self._relays.pop(msg.req_id)
            self.tell(asker, RelayResult(msg.req_id, False, msg.target, reason="unknown role"))
            return
        self.after(msg.timeout_s, (_RELAY_TIMEOUT, msg.req_id))

    def _on_pong(self, pong: Pong) -> None:
        if self._flood and pong.req_id == self._flood["run"]:
            self._flood_pong(pong)
            return
        waiting = self._relays.pop(pong.req_id, None)
        if waiting is not None:
            asker, target = waiting
            result = RelayResult(pong.req_id, True, target, pong.pid, pong.via, arrived_by=pong.arrived_by)
            self.tell(asker, result, via="thespian")

    def _relay_timeout(self, req_id: str) -> None:
        waiting = self._relays.pop(req_id, None)
        if waiting is not None:
            asker, target = waiting
            self.tell(asker, RelayResult(req_id, False, target, reason="timeout"), via="thespian")

    # --- benchmark: a flood and round trips over one transport ------------------

    def _flood_start(self, msg: LaneFlood, asker: Any) -> None:
        run = uuid.uuid4().hex
        self._flood = {"run": run, "msg": msg, "asker": asker, "rtt": [], "seconds": None}
        self._flood["t0"] = time.perf_counter()
        for i in range(msg.count - 1):
            self.tell(msg.target, Ping(f"f{i}", msg.via, answer=False), via=msg.via)
        # Only the last one is answered: a transport keeps order per link, so
        # its Pong means the whole flood arrived.
        self.tell(msg.target, Ping(run, msg.via), via=msg.via)

    def _flood_pong(self, pong: Pong) -> None:
        flood = self._flood
        msg: LaneFlood = flood["msg"]
        elapsed = time.perf_counter() - flood["t0"]
        if flood["seconds"] is None:
            flood["seconds"] = elapsed
        else:
            flood["rtt"].append(elapsed * 1e6)
        if len(flood["rtt"]) < msg.rtt:
            flood["t0"] = time.perf_counter()
            self.tell(msg.target, Ping(flood["run"], msg.via), via=msg.via)
            return
        self._flood = {}
        done = LaneFloodDone(msg.via, msg.count, flood["seconds"], tuple(flood["rtt"]))
        self.tell(flood["asker"], done, via="thespian")

    # --- hooks for subclasses ---------------------------------------------------

    def on_start(self) -> None:
        """Open stores, sockets, loops. Raising here is a failure at start."""

    def on_stop(self) -> None:
        """Close what on_start opened. Called on an orderly stop only."""
        self.release()

    def release(self) -> None:
        """Give back fds and threads without sending or writing anything: the
        actor is being dropped after a crash or a kill. Must not raise."""

    def on_directory(self) -> None:
        """The directory changed (a peer started or restarted)."""

    def on_watch(self, fd: int) -> None:
        """A watched fd of `watch_fds()` is readable."""

    def on_wakeup(self, payload: Any) -> None:
        """A timer set with `after()` fired."""

    def watch_fds(self) -> list[int]:
        """Fds of this actor to watch for reading."""
        return []

    def end_of_batch(self) -> None:
        """The messages that arrived together are handled: persist and send
        what sums them up. Deliveries are acknowledged after this returns."""

    def before_wait(self) -> None:
        """Write out what is queued on the actor's own sockets before waiting."""

    def status_detail(self) -> dict[str, Any]:
        return {}

    def handle(self, msg: Any, sender: Any) -> None:
        log.warning("%s: unhandled %s", self.role, type(msg).__name__)


def count_boot(store: Store) -> int:
    """Increment and return how many times this store's owner has started."""
    boots = int(store.get(b"meta:boots") or b"0") + 1
    store.put(b"meta:boots", str(boots).encode())
    return boots


