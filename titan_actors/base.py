"""The base of every Titan actor: init, let-it-crash, parent death, status,
socket watching, the address directory and the FastLanes.

Subclasses implement `on_start()` (may raise: that is a failure at start),
`handle(msg, sender)` for their own messages, and optionally `on_stop()`,
`on_directory()`, `on_watch(fd)`, `on_wakeup(payload)`, `status_detail()`,
`watch_fds()`, `before_wait()` and `end_of_batch()`.

Lanes, the actor's own fds and its timers are served by an `ActorLoop`
thread (`OWN_LOOP`, all but the supervisors); thespian's thread delivers the
control plane. Handlers run under the loop's lock either way.

`sender` in `handle` is the peer's role (a `str`) when the peer is one of
ours, whichever transport the message came by, else the thespian address of
an outside asker. `self.tell(sender, reply)` answers either way.

Failure: any exception out of a handler is written to `<data>/logs/crash.log`
with the message type and the traceback, and the process exits with status 70
at once. Its supervisor sees `ChildActorExited` and restarts it; the new
process rebuilds its state from its store. Thespian's own retry (the handler
called twice, then `PoisonMessage`) never happens.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import socket
import time
import traceback
import uuid
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

from titan_actors.actorloop import ActorLoop
from titan_actors.lanes import LaneHub
from titan_actors.messages import (
    ChildStarted,
    Deliver,
    Delivered,
    Directory,
    EngineInfo,
    EventsStored,
    GetDirectory,
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
from titan_actors.outbox import Deliveries, Outbox
from titan_actors.store import Store

__all__ = ["CRASH_EXIT_CODE", "TitanActor", "count_boot", "hostname", "set_parent_death_signal"]

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_FLUSH = "titan:flush-lanes"
_LAZY_FLUSH = "titan:flush-lazy"
#: How long a message that is not urgent (acknowledgements, events on their way
#: to NATS, deliveries to position actors) may wait to share a write with others.
LAZY_S = 0.005
_OUTBOX_TICK = "titan:outbox"
_OUTBOX_RESEND_S = 1.0
_RELAY_TIMEOUT = "titan:relay-timeout"


def set_process_name(name: str) -> None:
    """The kernel's name of this process (`ps -o comm`, `top`): 15 bytes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies.

    SIGKILL rather than SIGTERM: thespian turns SIGTERM into a graceful
    shutdown that an orphan may never finish.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


class TitanActor(Actor):
    """See the module docstring."""

    #: Roles this actor talks to (a name ending in ":" is a prefix), shown in status.
    needs: tuple[str, ...] = ()
    #: Serve lanes, sockets and timers on an `ActorLoop` thread. An actor that
    #: forks (`createActor`: the supervisors) must not: fork after threads.
    OWN_LOOP = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.role = ""
        self.engine: EngineInfo | None = None
        self.config: dict[str, Any] = {}
        self.parent: Any = None
        self.restarts = 0
        self.started_at = 0.0
        self.state = "starting"
        self.directory = Directory(0, ())
        self.lanes: LaneHub | None = None
        self._roles_by_address: dict[Any, str] = {}
        self._flush_pending = False
        self._lazy_armed = False
        self._acks: list[tuple[Any, Delivered]] = []
        self._relays: dict[str, tuple[Any, str]] = {}
        self._flood: dict[str, Any] = {}
        self._stores: list[Store] = []
        self._armed: set[str] = set()
        self.outbox: Outbox | None = None
        self.deliveries: Deliveries | None = None
        self._loop: ActorLoop | None = None

    # --- thespian entry point -------------------------------------------------

    def receiveMessage(self, msg: Any, sender: Any) -> ThespianWatch | None:
        loop = self._loop
        if loop is None:
            self._handle_guarded(msg, sender)
            if self._loop is not None:  # Init made it: it starts once Init's work is done
                self._loop.start()
        elif isinstance(msg, ActorExitRequest):
            loop.run_deferred()
            loop.stop()  # no handler runs on the loop past this point
            self._loop = None
            self._handle_guarded(msg, sender)
        elif not isinstance(msg, WatchMessage):  # the one fd thespian watches for us is the loop's
            with loop.lock:
                self._handle_guarded(msg, sender)
            loop.poke()  # the handler may have set timers or opened fds
        loop = self._loop
        if loop is not None:
            loop.run_deferred()
            return ThespianWatch([loop.thespian_fd()])
        if self.lanes is None:
            return None
        # Returned from every handler: a watch that is not re-armed is dropped.
        return ThespianWatch(self._watched())

    def _handle_guarded(self, msg: Any, sender: Any) -> None:
        try:
            self._receive(msg, sender)
            self._after_handlers()
        except Exception:
            self._crash(msg)

    def _after_handlers(self) -> None:
        if self.lanes is None:
            return  # not started, or stopped: nothing of ours to finish
        if self.started_at:
            self.end_of_batch()
        acks, self._acks = self._acks, []
        for sender, ack in acks:
            self.tell(sender, ack, urgent=False)
        if self.outbox is not None:
            self.outbox.push_new(self)
        if self.deliveries is not None:
            self.deliveries.push_new(self)
        self._flush_lanes()

    def _receive(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Init):
            self._boot(msg, sender)
        elif isinstance(msg, ActorExitRequest):
            self._shutdown()
        elif isinstance(msg, WatchMessage):
            self._on_watch_message(msg)
        elif isinstance(msg, WakeupMessage):
            self._on_wakeup_message(msg)
        elif self.engine is None:
            log.warning("%s got %s before Init; ignored", type(self).__name__, type(msg).__name__)
        elif isinstance(msg, PoisonMessage):
            log.error("%s: a peer could not handle %s", self.role, type(msg.poisonMessage).__name__)
        else:
            self._dispatch(msg, self._roles_by_address.get(str(sender), sender), "thespian")

    def _dispatch(self, msg: Any, sender: Any, transport: str) -> None:
        if isinstance(msg, Directory):
            self._apply_directory(msg)
        elif isinstance(msg, StatusRequest):
            self.tell(sender, self.status(msg.req_id), via="thespian")
        elif isinstance(msg, EventsStored) and self.outbox is not None:
            self.outbox.acknowledge(msg.seqs)
        elif isinstance(msg, Delivered) and self.deliveries is not None:
            self.deliveries.acknowledge(msg.seqs)
        elif isinstance(msg, Deliver):
            for _seq, item in msg.items:
                self._dispatch(item, sender, transport)
            # Acknowledged once the batch is handled, after `end_of_batch` (which
            # may be where the receiver persists what it did with the items).
            self._acks.append((sender, Delivered(msg.source, tuple(seq for seq, _item in msg.items))))
        elif isinstance(msg, GetDirectory):
            self.tell(sender, self.directory, via="thespian")
        elif isinstance(msg, Ping):
            if msg.answer:
                pong = Pong(msg.req_id, self.role, os.getpid(), msg.via, arrived_by=transport)
                self.tell(sender, pong, via=msg.via)
        elif isinstance(msg, Pong):
            self._on_pong(msg)
        elif isinstance(msg, Relay):
            self._relay(msg, sender)
        elif isinstance(msg, InjectFault):
            if msg.at:
                self._armed.add(msg.at)
            else:
                raise RuntimeError(f"fault injected into {self.role}: {msg.reason}")
        elif isinstance(msg, LaneFlood):
            self._flood_start(msg, sender)
        else:
            self.handle(msg, sender)

    # --- life cycle -------------------------------------------------------------

    def _boot(self, init: Init, sender: Any) -> None:
        if self.engine is not None:
            log.warning("%s: second Init ignored", self.role)
            return
        set_parent_death_signal()
        if init.parent_pid and os.getppid() != init.parent_pid:
            # Our parent died between fork and now: we are an orphan already.
            # (The root's parent is the thespian Admin: parent_pid 0, not checked.)
            os._exit(CRASH_EXIT_CODE)
        self.role, self.engine, self.config = init.role, init.engine, dict(init.config)
        set_process_name(f"t:{init.role}")
        self.parent, self.restarts = sender, init.restarts
        self.lanes = LaneHub(engine_id=init.engine.engine_id, role=init.role)
        if self.OWN_LOOP:
            self._loop = ActorLoop(name=init.role, fds=self._watched, serve=self._serve_ready,
                                   fire=self._on_timer, after_wake=self._after_wake, crash=self._crash)
        if init.directory is not None:
            self._apply_directory(init.directory, notify=False)
        self.on_start()
        self.on_directory()  # hooks see the first directory only once the actor is started
        self.started_at = time.time()
        if self.state == "starting":
            self.state = "running"
        gc.freeze()  # what start built lives as long as we do: full collections need not scan it
        self.send(sender, ChildStarted(self.my_peer(), self.started_at))

    def my_peer(self) -> Peer:
        assert self.engine is not None and self.lanes is not None
        return Peer(
            role=self.role,
            address=self.myAddress,
            pid=os.getpid(),
            lane=self.lanes.name,
            host=self.engine.host,
            pgid=os.getpgid(0),
        )

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
        return time.time_ns() // 1_000_000 if not self.started_at else int(self.started_at * 1000)

    def crash_point(self, name: str) -> None:
        """Die here, as a SIGKILL would, if a chaos test armed this point."""
        if name in self._armed:
            log.warning("%s: crash point %s reached; killing myself", self.role, name)
            os.kill(os.getpid(), signal.SIGKILL)

    def open_store(self, relpath: str) -> Store:
        """Open this actor's RocksDB directory `<data>/<relpath>`; closed on stop."""
        assert self.engine is not None
        store = Store(os.path.join(self.engine.data_dir, relpath), fsync=self.engine.fsync)
        self._stores.append(store)
        return store

    def _shutdown(self) -> None:
        try:
            self._after_handlers()  # what the last batch left: written, acknowledged, sent
            self.on_stop()
        finally:
            for store in self._stores:
                store.close()
            self._stores.clear()
            if self.lanes is not None:
                self.lanes.close()  # writes what is queued, urgent or not
                self.lanes = None

    def _crash(self, msg: Any) -> None:
        """Let it crash: record what failed (a message, or what the loop was
        doing) where a dying process can still write it, then exit so the
        supervisor restarts us."""
        text = traceback.format_exc()
        what = msg if isinstance(msg, str) else type(msg).__name__
        line = f"{time.time():.3f} pid={os.getpid()} role={self.role or '?'} message={what}\n{text}"
        try:
            if self.engine is not None:
                path = os.path.join(self.engine.data_dir, "logs", "crash.log")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            log.critical("actor %s crashed on %s:\n%s", self.role, what, text)
        finally:
            os._exit(CRASH_EXIT_CODE)

    # --- the directory ----------------------------------------------------------

    def _apply_directory(self, directory: Directory, *, notify: bool = True) -> None:
        if directory.version < self.directory.version:
            return
        old = {p.role: p for p in self.directory.peers}
        self.directory = directory
        self._roles_by_address = {str(p.address): p.role for p in directory.peers}
        if self.lanes is not None:
            for role, peer in old.items():
                new = directory.get(role)
                if new is None or new.lane != peer.lane:
                    self.lanes.forget(role)
        for queue in (self.outbox, self.deliveries):
            for role in queue.destinations() if queue is not None else ():
                now, before = directory.get(role), old.get(role)
                if now is not None and (before is None or before.pid != now.pid):
                    queue.push(self, only=role)  # a new receiver: hand it all not acknowledged
        if notify:
            self.on_directory()

    def reply_now(self, peer: Any, msg: Any) -> bool:
        """`tell`, then write the lanes at once: the answer a peer waits for
        leaves before the rest of this handler's work (reports, events)."""
        sent = self.tell(peer, msg)
        self._flush_lanes()
        return sent

    def tell(self, peer: Any, msg: Any, *, via: str = "lane", urgent: bool = True) -> bool:
        """Send `msg` to a role (through the directory) or to a thespian address.

        Over a FastLane when `via="lane"` and the peer is on this host with a
        lane that opens, else over thespian. A message that is not `urgent`
        may wait up to `LAZY_S` on its lane to share a write with others.
        Returns False when the role is not in the directory (nothing was sent).
        """
        if not isinstance(peer, str):
            self._send_thespian(peer, msg)
            return True
        target = self.directory.get(peer)
        if target is None:
            log.warning("%s: no address for role %s; %s dropped", self.role, peer, type(msg).__name__)
            return False
        if (
            via == "lane"
            and target.lane
            and self.engine is not None
            and target.host == self.engine.host
            and self.lanes is not None
            and self.lanes.send(target.role, target.lane, msg, urgent=urgent)
        ):
            return True
        self._send_thespian(target.address, msg)
        return True

    def _send_thespian(self, address: Any, msg: Any) -> None:
        """Thespian's transport belongs to its thread: from the loop, hand it over."""
        if self._loop is not None and self._loop.in_loop():
            self._loop.defer(self.send, address, msg)
        else:
            self.send(address, msg)

    # --- sockets and timers -----------------------------------------------------

    def _on_watch_message(self, msg: WatchMessage) -> None:
        self._serve_ready(list(msg.ready))

    def _serve_ready(self, ready: list[int]) -> None:
        if self.lanes is not None:
            for lane_msg, role in self.lanes.read(ready):
                self._dispatch(lane_msg, role, "lane")
        lane_fds = set(self.lanes.fds()) if self.lanes is not None else set()
        for fd in ready:
            if fd not in lane_fds:
                self.on_watch(fd)

    def _watched(self) -> list[int]:
        return (self.lanes.fds() if self.lanes is not None else []) + self.watch_fds()

    def _after_wake(self) -> None:
        self.before_wait()
        self._after_handlers()

    def _on_wakeup_message(self, msg: WakeupMessage) -> None:
        self._on_timer(msg.payload)

    def _on_timer(self, payload: Any) -> None:
        if payload == _FLUSH:
            self._flush_pending = False
        elif payload == _LAZY_FLUSH:
            self._lazy_armed = False
            self._flush_lanes(lazy_too=True)
        elif payload == _OUTBOX_TICK:
            for queue in (self.outbox, self.deliveries):
                if queue is not None:
                    queue.push(self, resend_after_s=_OUTBOX_RESEND_S)
            self.after(_OUTBOX_RESEND_S, _OUTBOX_TICK)
        elif isinstance(payload, tuple) and payload and payload[0] == _RELAY_TIMEOUT:
            self._relay_timeout(payload[1])
        elif self.engine is not None:
            self.on_wakeup(payload)

    def after(self, seconds: float, payload: Any) -> None:
        """Deliver `payload` to `on_wakeup` in about `seconds`."""
        if self._loop is not None:
            self._loop.after(seconds, payload)
        else:
            self.wakeupAfter(timedelta(seconds=seconds), payload=payload)

    def _flush_lanes(self, *, lazy_too: bool = False) -> None:
        if self.lanes is None:
            return
        if not self.lanes.flush(lazy_too=lazy_too) and not self._flush_pending:
            # The peer's socket buffer is full: try again shortly, keep serving meanwhile.
            self._flush_pending = True
            self.after(0.001, _FLUSH)
        if not self._lazy_armed and self.lanes.holding():
            self._lazy_armed = True
            self.after(LAZY_S, _LAZY_FLUSH)

    # --- status -----------------------------------------------------------------

    def status(self, req_id: str = "") -> StatusReply:
        detail: dict[str, Any] = {"directory_version": self.directory.version,
                                  "peers": self.known_peers()}
        if self.lanes is not None:
            detail["lanes"] = {"sent": self.lanes.sent, "received": self.lanes.received}
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
        """Close what on_start opened. Called on an orderly exit only."""

    def on_directory(self) -> None:
        """The directory changed (a peer started or restarted)."""

    def on_watch(self, fd: int) -> None:
        """A watched fd of `watch_fds()` is readable."""

    def on_wakeup(self, payload: Any) -> None:
        """A timer set with `after()` fired."""

    def watch_fds(self) -> list[int]:
        """Extra fds to watch besides the lanes."""
        return []

    def end_of_batch(self) -> None:
        """The messages that arrived together are handled: persist and send
        what sums them up. Deliveries are acknowledged after this returns."""

    def before_wait(self) -> None:
        """Write out what is queued on the actor's own sockets before waiting."""

    def status_detail(self) -> dict[str, Any]:
        return {}

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ChildActorExited):
            log.warning("%s: unexpected ChildActorExited", self.role)
            return
        log.warning("%s: unhandled %s", self.role, type(msg).__name__)


def hostname() -> str:
    return socket.gethostname()


def count_boot(store: Store) -> int:
    """Increment and return how many times this store's owner has started."""
    boots = int(store.get(b"meta:boots") or b"0") + 1
    store.put(b"meta:boots", str(boots).encode())
    return boots
