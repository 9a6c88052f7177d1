"""The IPC gateway actor: serves the FastPath socket to signal senders.

Per frame: length → MAC (constant time) → JSON object → fields → replay
window → idempotency → route. `BAD_FRAME` and `BAD_SIGNATURE` close the
connection after the reply; every other refusal keeps it.

Routes (over FastLanes): PREPARE → risk guard → venue adapter; CONFIRM,
ABORT, CANCEL → the adapter of the venue the signal was prepared on. The
outcome comes back as an event (`OrderPrepared`, `OrderAccepted`, ...,
`CommandRefused`) and becomes the reply.

Idempotency: every final reply is written to the gateway's store under
`(signal_id, type)` before it is sent, and a repeat gets it again with
`"duplicate": true` — across restarts. A repeat of a request still in
progress waits for the same outcome. A CONFIRM or ABORT that arrives while
the PREPARE of its signal is in progress waits for it (pipelining).

Failure: a peer that does not answer within `request_timeout_ms` gets the
waiting senders `INTERNAL` (the outcome is not known yet); one that is not in
the directory (restarting), or trading states not known yet, get `BUSY`
(nothing was done) — never an order on its own. A late outcome is still persisted, so a resend learns it.

Limits (`[ipc]`), each a refusal, never a crash: a connection with
`max_in_flight` requests outstanding gets `BUSY`, and so does a NATS place or
cancel while `max_in_flight` NATS commands are outstanding; beyond
`max_connections` a new connection gets one `BUSY` frame and is closed; so
is one accepted when the process is out of file descriptors (a reserve
descriptor is freed to take it and close it, so the listening socket does
not spin). A connection silent for `idle_timeout_s` (0: never) is closed, one
that leaves a frame incomplete for `partial_frame_timeout_ms` gets
`BAD_FRAME` and is closed. A client that does not read its replies is
disconnected once 16 MiB are queued for it, and the one with the most queued
when all connections together exceed `max_queued_reply_bytes`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import socket
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from titan_actors.domain.money import json_default, to_decimal
from titan_actors.domain.signals import Refusal, Request, parse_request
from titan_actors.messages import (
    AbortOrder,
    CancelByNats,
    CancelOrder,
    CheckOrder,
    CommandRefused,
    CommandReply,
    ExecutionReport,
    Heartbeat,
    HeartbeatArmed,
    OrderAborted,
    OrderAccepted,
    OrderCanceled,
    OrderPrepared,
    PlaceOrder,
    StatesApplied,
    SubmitOrder,
    TradingStates,
    WebhookRequest,
)
from titan_actors.runtime import otel
from titan_actors.runtime.actor import TitanActor, count_boot
from titan_actors.runtime.clock import now_ms
from titan_actors.runtime.files import bind_unix_socket
from titan_actors.runtime.histogram import Histogram
from titan_actors.runtime.trace import TRACE, trace
from titan_actors.secret import read_secret
from titan_actors.wire.api import webhook_request
from titan_actors.wire.fastpath import (
    FrameError,
    FrameReader,
    decode_payload,
    duplicate_key,
    encode_message,
    mac_ok,
)

__all__ = ["IpcGateway"]

log = logging.getLogger(__name__)

_TICK = "gw:tick"
_FLUSH = "gw:flush"
_TICK_S = 0.02
_MAX_OUT = 16 * 1024 * 1024
_REAP = "gw:reap"
_REAP_EVERY_S = 0.5
_MAX_CONFIRMERS = 200_000

_NOT_FINAL = frozenset({"BUSY", "INTERNAL", "STALE", "BAD_FRAME", "BAD_SIGNATURE"})


#: Who waits for a reply: a connection id, or ("nats" | "place" | "http", correlation id).
Target = int | tuple[str, str]


@dataclass(slots=True)
class _Conn:
    id: int
    sock: socket.socket
    reader: FrameReader = field(default_factory=FrameReader)
    out: bytearray = field(default_factory=bytearray)
    in_flight: int = 0
    closing: bool = False
    confirmed: set[str] = field(default_factory=set)
    answered: bool = False  # `out` holds an answer to a request (not only pushes)
    last_read: float = 0.0  # monotonic
    partial_since: float = 0.0  # monotonic; 0 while no frame is incomplete


#: Signals whose trace a later request of theirs joins (the newest kept).
_TRACED_SIGNALS = 10_000
#: Request types counted by name; anything else a client sends counts as "other".
_REQUEST_TYPES = frozenset({"PREPARE", "CONFIRM", "ABORT", "CANCEL", "PING", "HEARTBEAT"})


@dataclass(slots=True)
class _Pending:
    deadline: float
    waiters: list[tuple[Target, Request]] = field(default_factory=list)


class IpcGateway(TitanActor):
    needs = ("risk", "venue:", "positions", "nats")

    def on_start(self) -> None:
        self.store = self.open_store("gateway")
        self.boots = count_boot(self.store)
        cfg = self.config
        assert self.engine is not None
        self.secret = read_secret(self.engine.data_dir, cfg.get("hmac_secret", ""))
        self.window_ms = int(cfg.get("replay_window_ms", 5000))
        self.max_in_flight = int(cfg.get("max_in_flight", 256))
        self.max_connections = int(cfg.get("max_connections", 256))
        self.idle_timeout_s = float(cfg.get("idle_timeout_s", 900))
        self.partial_timeout_s = int(cfg.get("partial_frame_timeout_ms", 5000)) / 1000
        self.max_queued = int(cfg.get("max_queued_reply_bytes", 64 * 1024 * 1024))
        self.nats_in_flight = 0
        self.queued = 0  # bytes in every connection's `out`, kept by `_queued_changed`
        self.timeout_s = int(cfg.get("request_timeout_ms", 2000)) / 1000
        self.venues = {name: frozenset(symbols) for name, symbols in cfg.get("venues", {}).items()}
        self.default_venue = cfg.get("routing", {}).get("default_venue", "paper")
        # A webhook may leave its quantity to the risk guard (`[sizing]`).
        self.risk_pct = to_decimal(cfg.get("risk_per_trade_pct", 0), field="risk_per_trade_pct") or None
        self.path = cfg.get("socket", "/tmp/titan-execution.sock")
        # Bound once the risk guard says the engine can take an order (`TradingStates.ready`).
        self.server: socket.socket | None = None
        self.conns: dict[int, _Conn] = {}
        self.by_id: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self.pending: dict[tuple[str, str], _Pending] = {}
        self.held: dict[str, list[tuple[Target, Request]]] = {}
        self.heartbeats: dict[str, tuple[Target, Request, float]] = {}  # corr → waiting for HeartbeatArmed
        # signal → the connection that confirmed it (EXECUTION pushes); bounded,
        # and a connection's entries go with it.
        self.confirmed_by: OrderedDict[str, int] = OrderedDict()
        # Unknown until the risk guard tells us: no CONFIRM passes meanwhile.
        self.trading_state = "HALTED"
        self.states: dict[str, str] | None = None
        self.counts = {"requests": 0, "replies": 0, "executions": 0, "busy": 0, "internal": 0,
                       "refused_connections": 0, "out_of_fds": 0, "idle_closed": 0, "partial_closed": 0,
                       "slow_readers_closed": 0}
        self.requests: Counter[str] = Counter()  # by type (unknown types as "other")
        self.replies: Counter[str] = Counter()  # by "type|code"
        self.confirm_to_accepted = Histogram()  # seconds from a CONFIRM's arrival to its ACCEPTED
        self.spans: dict[tuple[str, str], Any] = {}  # request → its open span (tracing on)
        self.signal_traces: OrderedDict[str, str] = OrderedDict()  # signal → traceparent of its PREPARE
        self._reserve_fd = _open_reserve()
        self._flush_armed = False
        # Final replies are kept `[engine] retention_days` (the spec asks for 24 hours).
        self.retention = self.open_retention(self.store)
        self.after(_TICK_S, _TICK)
        self.after(_REAP_EVERY_S, _REAP)

    def on_stop(self) -> None:
        serving = self.server is not None
        self.release()
        if serving:  # else the path may be another engine's
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def release(self) -> None:
        for conn in list(self.conns.values()):
            self._drop(conn)
        if self.server is not None:
            self.server.close()
        if self._reserve_fd >= 0:
            os.close(self._reserve_fd)
            self._reserve_fd = -1

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, "socket": self.path, "serving": self.server is not None,
                "connections": len(self.conns),
                "pending": len(self.pending), "trading_states_known": self.states is not None,
                "confirmers": len(self.confirmed_by), "queued_reply_bytes": self.queued,
                "nats_in_flight": self.nats_in_flight, **self.counts,
                "requests_by_type": dict(self.requests), "replies_by_type": dict(self.replies),
                "confirm_to_accepted_s": self.confirm_to_accepted.snapshot()}

    # --- sockets --------------------------------------------------------------------

    def watch_fds(self) -> list[int]:
        return [self.server.fileno(), *self.conns] if self.server is not None else []

    def end_of_batch(self) -> None:
        # Answers to requests leave with the batch that made them (the worker
        # runs batches in generations: an ACCEPTED right after the journal),
        # taking along whatever pushes wait before them on that connection.
        self._flush_all(answers_only=True)

    def before_wait(self) -> None:
        # The rest (EXECUTION pushes) once per wake: one write per connection,
        # however many pushes.
        self._flush_all()

    def on_watch(self, fd: int) -> None:
        if self.server is not None and fd == self.server.fileno():
            self._accept()
        elif fd in self.conns:
            self._read(self.conns[fd])

    def _accept(self) -> None:
        assert self.server is not None
        while True:
            try:
                sock, _ = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE):
                    raise
                self._refuse_without_fds()
                continue
            if len(self.conns) >= self.max_connections:
                self.counts["refused_connections"] += 1
                _refuse(sock, encode_message(self.secret, {**_rejected(
                    "BUSY", f"the engine serves {self.max_connections} connections; retry later"),
                    "ts": now_ms()}))
                continue
            sock.setblocking(False)
            conn = _Conn(next(self._ids), sock, last_read=time.monotonic())
            self.conns[sock.fileno()] = conn
            self.by_id[conn.id] = conn

    def _refuse_without_fds(self) -> None:
        """Out of descriptors: free the reserve, take the connection and close
        it, so the listening socket is not readable forever."""
        self.counts["out_of_fds"] += 1
        if self._reserve_fd < 0:  # nothing to free: the waiting client stays queued until one closes
            self.counts["refused_connections"] += 1
            return
        os.close(self._reserve_fd)
        self._reserve_fd = -1
        try:
            assert self.server is not None
            sock, _ = self.server.accept()
            self.counts["refused_connections"] += 1
            _refuse(sock, b"")
        except OSError:
            pass
        finally:
            self._reserve_fd = _open_reserve()

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        if conn.closing:
            return
        conn.last_read = time.monotonic()
        conn.reader.feed(data)
        try:
            for frame in conn.reader.frames():
                if not mac_ok(self.secret, frame):
                    self._close_with(conn, "BAD_SIGNATURE", "the MAC does not match the payload")
                    return
                try:
                    obj = decode_payload(frame.payload)
                except FrameError as exc:
                    self._close_with(conn, "BAD_FRAME", str(exc))
                    return
                self.counts["requests"] += 1
                kind = obj.get("type") if isinstance(obj, dict) else None
                # Any JSON can be here (a dict is not hashable): only a known name is a label.
                self.requests[kind if isinstance(kind, str) and kind in _REQUEST_TYPES else "other"] += 1
                twice = duplicate_key(frame.payload, obj)
                if twice is not None:  # which of the two was meant is not ours to guess
                    self._send(conn, {**_rejected("INVALID", f"{twice}: appears twice in one object"),
                                      **_ids(obj)})
                    continue
                self._on_request(conn, obj)
                if conn.closing:
                    return
        except FrameError as exc:
            self._close_with(conn, "BAD_FRAME", str(exc))
            return
        if conn.reader.pending:
            conn.partial_since = conn.partial_since or conn.last_read
        else:
            conn.partial_since = 0.0

    def _remember_confirmer(self, signal_id: str, conn_id: int) -> None:
        self.confirmed_by[signal_id] = conn_id
        self.confirmed_by.move_to_end(signal_id)
        conn = self.by_id.get(conn_id)
        if conn is not None:
            conn.confirmed.add(signal_id)
        while len(self.confirmed_by) > _MAX_CONFIRMERS:
            self.confirmed_by.popitem(last=False)

    def _drop(self, conn: _Conn) -> None:
        for signal_id in conn.confirmed:
            if self.confirmed_by.get(signal_id) == conn.id:
                del self.confirmed_by[signal_id]
        conn.confirmed.clear()
        self.conns.pop(conn.sock.fileno(), None)
        self.by_id.pop(conn.id, None)
        self.queued -= len(conn.out)
        conn.out.clear()
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _close_with(self, conn: _Conn, code: str, reason: str) -> None:
        self._send(conn, {"type": "REJECTED", "code": code, "reason": reason})
        conn.closing = True

    def _send(self, conn: _Conn, reply: dict[str, Any], *, answer: bool = True) -> None:
        reply["ts"] = now_ms()
        frame = encode_message(self.secret, reply)
        conn.out += frame
        self.queued += len(frame)
        conn.answered = conn.answered or answer
        self.counts["replies"] += 1
        self.replies[f"{reply.get('type', '')}|{reply.get('code', '')}"] += 1
        if len(conn.out) > _MAX_OUT:
            self._drop_slow(conn)
        elif self.queued > self.max_queued:
            self._drop_slow(max(self.conns.values(), key=lambda c: len(c.out)))

    def _drop_slow(self, conn: _Conn) -> None:
        log.warning("gateway: connection %d does not read its replies (%d bytes queued); closing it",
                    conn.id, len(conn.out))
        self.counts["slow_readers_closed"] += 1
        self._drop(conn)

    def _flush_all(self, *, answers_only: bool = False) -> None:
        waiting = False
        for conn in list(self.conns.values()):
            if answers_only and not conn.answered:
                continue
            conn.answered = False
            if conn.out:
                if TRACE:
                    trace("client_write", conn=conn.id, bytes=len(conn.out))
                try:
                    sent = conn.sock.send(conn.out)
                    del conn.out[:sent]
                    self.queued -= sent
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self._drop(conn)
                    continue
            if conn.closing and not conn.out:
                self._drop(conn)
            elif conn.out:
                waiting = True
        if waiting and not self._flush_armed:
            self._flush_armed = True
            self.after(0.001, _FLUSH)

    def _reap(self, now: float) -> None:
        """Close connections idle too long or stuck in the middle of a frame."""
        for conn in list(self.conns.values()):
            if conn.closing:
                continue
            if conn.partial_since and now - conn.partial_since > self.partial_timeout_s:
                self.counts["partial_closed"] += 1
                self._close_with(conn, "BAD_FRAME", f"a frame stayed incomplete for over "
                                                    f"{self.partial_timeout_s * 1000:.0f} ms")
            elif self.idle_timeout_s and now - conn.last_read > self.idle_timeout_s and not conn.in_flight:
                self.counts["idle_closed"] += 1
                self._drop(conn)

    # --- requests -------------------------------------------------------------------

    def _on_request(self, conn: _Conn, obj: dict[str, Any]) -> None:
        parsed = parse_request(obj, now_ms=now_ms(), window_ms=self.window_ms,
                               venues=self.venues, default_venue=self.default_venue)
        if isinstance(parsed, Refusal):
            self._refuse_unparsed(conn.id, obj, parsed)
            return
        if parsed.type == "PING":
            self._send(conn, _echo(parsed, {"type": "PONG", "engine_ts": now_ms(),
                                            "trading_state": self.trading_state}))
            return
        if parsed.type == "HEARTBEAT":
            self._heartbeat(conn.id, parsed)
            return
        if conn.in_flight >= self.max_in_flight:
            self.counts["busy"] += 1
            self._send(conn, _echo(parsed, _rejected("BUSY", f"{conn.in_flight} requests in flight")))
            return
        self._submit(conn.id, parsed)

    def _on_webhook(self, msg: WebhookRequest) -> None:
        """A FastPath request that came by HTTP: the same checks and
        idempotency, `ts` optional; shares the NATS in-flight limit."""
        target: Target = ("http", msg.corr)
        converted = webhook_request(msg.request)
        if isinstance(converted, str):
            self._refuse_unparsed(target, msg.request, Refusal("INVALID", converted))
            return
        request, extra, ladder = converted
        parsed = parse_request(request, now_ms=now_ms(), window_ms=self.window_ms, venues=self.venues,
                               default_venue=self.default_venue, ts_required=False,
                               risk_pct=self.risk_pct, extra=extra,
                               ladder=tuple(to_decimal(p, field="entry_zone") for p in ladder))
        if isinstance(parsed, Refusal):
            self._refuse_unparsed(target, msg.request, parsed)
        elif parsed.type == "PING":
            self._send_to(target, _echo(parsed, {"type": "PONG", "engine_ts": now_ms(),
                                                 "trading_state": self.trading_state}))
        elif parsed.type == "HEARTBEAT":
            self._heartbeat(target, parsed)
        elif self.server is None:
            self._deliver(target, parsed, _rejected("BUSY", "the engine is starting; resend"))
        elif self.nats_in_flight >= self.max_in_flight:
            self.counts["busy"] += 1
            self._deliver(target, parsed, _rejected("BUSY", f"{self.nats_in_flight} NATS and HTTP requests "
                                                            "in flight"))
        else:
            self._submit(target, parsed)

    def _heartbeat(self, target: Target, req: Request) -> None:
        """The dead man's switch: the risk guard arms it, persisted, then we answer."""
        corr = f"hb{next(self._ids)}"
        if not self.tell("risk", Heartbeat(req.scope, req.timeout_ms, corr)):
            self._send_to(target, _echo(req, _rejected("BUSY", "the risk guard is restarting; resend")))
            return
        self.heartbeats[corr] = (target, req, time.monotonic() + self.timeout_s)

    def _heartbeat_armed(self, msg: HeartbeatArmed) -> None:
        waiting = self.heartbeats.pop(msg.corr, None)
        if waiting is None:
            return
        target, req, _deadline = waiting
        reply = _rejected("INVALID", msg.error) if msg.error else {
            "type": "HEARTBEAT_OK", "scope": msg.scope, "timeout_ms": msg.timeout_ms,
            "deadline": msg.deadline or None}
        self._send_to(target, _echo(req, reply))

    def _submit(self, target: Target, req: Request) -> None:
        """One request from a connection (its id) or a NATS command (a tuple)."""
        key = (req.signal_id, req.type)
        stored = self._stored(key)
        if stored is not None:
            self._deliver(target, req, {**stored, "duplicate": True})
            return
        self._count(target, +1)
        if key in self.pending:
            self.pending[key].waiters.append((target, req))
        elif req.type in ("CONFIRM", "ABORT", "CANCEL") and (req.signal_id, "PREPARE") in self.pending:
            self.held.setdefault(req.signal_id, []).append((target, req))
        else:
            self._route(target, req)

    def _refuse_unparsed(self, target: Target, obj: dict[str, Any], refusal: Refusal) -> None:
        reply = _rejected(refusal.code, refusal.reason)
        for name in ("signal_id", "req_id"):
            if isinstance(obj.get(name), str) and len(obj[name]) <= 128:
                reply[name] = obj[name]
        kind, signal_id = obj.get("type"), obj.get("signal_id")
        keyable = refusal.code == "INVALID" and kind in ("PREPARE", "CONFIRM", "ABORT", "CANCEL") \
            and not refusal.reason.startswith(("signal_id:", "ts:", "req_id:"))
        if keyable and isinstance(signal_id, str):
            stored = self._stored((signal_id, kind))
            if stored is not None:
                self._send_to(target, {**stored, "duplicate": True, **_ids(obj)})
                return
            self._persist((signal_id, kind), reply)
        self._send_to(target, reply)

    def _send_to(self, target: Target, reply: dict[str, Any]) -> None:
        """A reply that needs no `Request` to be matched (a refusal before parsing)."""
        if isinstance(target, int):
            conn = self.by_id.get(target)
            if conn is not None:
                self._send(conn, reply)
            return
        reply["ts"] = now_ms()
        self.tell(target[0] if target[0] == "http" else "nats", CommandReply(target[1], reply))

    def _route(self, target: Target, req: Request) -> None:
        key = (req.signal_id, req.type)
        self.pending[key] = _Pending(time.monotonic() + self.timeout_s, [(target, req)])
        # A signal's trace begins at its PREPARE (sampled or not, there); its
        # later requests join it while the gateway remembers it.
        parent = self.signal_traces.get(req.signal_id, "")
        span = otel.start(f"fastpath {req.type}", parent, root=not parent, kind="server",
                          rpc__system="titan-fastpath", rpc__method=req.type, titan__signal_id=req.signal_id)
        if span is not None:
            if span.is_recording():
                self.spans[key] = span
            if not parent:
                self.signal_traces[req.signal_id] = otel.traceparent(span)
                while len(self.signal_traces) > _TRACED_SIGNALS:
                    self.signal_traces.popitem(last=False)
        if req.type == "PREPARE":
            sent = self.tell("risk", CheckOrder(req.intent, self.role, otel.traceparent(span)))
            if not sent:
                self._settle_unfinal(key, "BUSY", "the risk guard is restarting; resend")
            return
        prepared = self._stored((req.signal_id, "PREPARE"))
        if prepared is None or prepared.get("type") != "PREPARED":
            self._on_outcome(CommandRefused(req.signal_id, req.type, "UNKNOWN_SIGNAL",
                                            "signal_id: no PREPARE of this signal was accepted"))
            return
        venue = prepared["order"]["exchange"]
        # A halt is checked by the adapter at the moment of sending, and only
        # there: a CONFIRM resent after INTERNAL must learn what became of the
        # first one, which may have reached the venue before the halt.
        if req.type == "CONFIRM" and self.states is None:
            self._settle_unfinal((req.signal_id, req.type), "BUSY",
                                 "the trading state is not known yet; resend")
            return
        command = {"CONFIRM": SubmitOrder, "ABORT": AbortOrder, "CANCEL": CancelOrder}[req.type]
        message = SubmitOrder(req.signal_id, self.role, otel.traceparent(span)) if req.type == "CONFIRM" \
            else command(req.signal_id, self.role)
        if not self.tell(f"venue:{venue}", message):
            self._settle_unfinal(key, "BUSY", f"the adapter of venue {venue} is restarting; resend")

    # --- outcomes ---------------------------------------------------------------------

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, OrderPrepared | OrderAccepted | OrderAborted | OrderCanceled | CommandRefused):
            self._on_outcome(msg)
        elif isinstance(msg, ExecutionReport):
            self._on_execution(msg)
        elif isinstance(msg, HeartbeatArmed):
            self._heartbeat_armed(msg)
        elif isinstance(msg, WebhookRequest):
            self._on_webhook(msg)
        elif isinstance(msg, PlaceOrder | CancelByNats):
            if isinstance(msg, PlaceOrder):
                target, req = ("place", msg.corr), Request("PREPARE", msg.intent.signal_id, now_ms(), None,
                                                             msg.intent)
            else:
                target, req = ("nats", msg.corr), Request("CANCEL", msg.signal_id, now_ms(), None)
            if self.server is None:  # not ready to take an order yet: nothing is done, resend
                self._deliver(target, req, _rejected("BUSY", "the engine is starting; resend"))
            elif self.nats_in_flight >= self.max_in_flight:
                self.counts["busy"] += 1
                self._deliver(target, req, _rejected("BUSY", f"{self.nats_in_flight} NATS commands "
                                                             "in flight"))
            else:
                self._submit(target, req)
        elif isinstance(msg, TradingStates):
            self.states = dict(msg.states)
            self.trading_state = msg.states.get("global", "ACTIVE")
            if msg.ready and self.server is None:
                self.server = bind_unix_socket(self.path)
            self.tell("risk", StatesApplied(self.role, msg.version))
        else:
            super().handle(msg, sender)

    def _on_outcome(self, msg: Any) -> None:
        self.crash_point(f"gateway.before_persist.{msg.command}")
        key = (msg.signal_id, msg.command)
        reply = _reply_of(msg)
        final = reply["type"] != "REJECTED" or reply["code"] not in _NOT_FINAL
        if final and self._stored(key) is None:
            self._persist(key, reply)
            self.crash_point(f"gateway.after_persist.{msg.command}")
        otel.end(self.spans.pop(key, None), titan__reply=reply["type"], titan__code=reply.get("code", ""))
        pending = self.pending.pop(key, None)
        if pending is not None:
            if msg.command == "CONFIRM" and isinstance(msg, OrderAccepted):
                self.confirm_to_accepted.observe(time.monotonic() - (pending.deadline - self.timeout_s))
            for target, req in pending.waiters:
                if msg.command == "CONFIRM" and isinstance(msg, OrderAccepted) and isinstance(target, int):
                    self._remember_confirmer(msg.signal_id, target)
                self._answer(target, req, reply)
        if msg.command == "PREPARE":
            for target, req in self.held.pop(msg.signal_id, []):
                self._count(target, -1)
                self._submit(target, req)

    def _answer(self, target: Target, req: Request, reply: dict[str, Any]) -> None:
        self._count(target, -1)
        self._deliver(target, req, reply)

    def _count(self, target: Target, delta: int) -> None:
        if not isinstance(target, int):
            self.nats_in_flight += delta
            return
        conn = self.by_id.get(target)
        if conn is not None:
            conn.in_flight += delta

    def _deliver(self, target: Target, req: Request, reply: dict[str, Any]) -> None:
        reply = _echo(req, dict(reply))
        if isinstance(target, int):
            conn = self.by_id.get(target)
            if conn is not None:  # else the sender left; a resend gets the persisted outcome
                self._send(conn, reply)
            return
        kind, corr = target
        if kind == "place" and reply["type"] == "PREPARED":
            # NATS place: prepared, now confirm in the same step.
            confirm = Request("CONFIRM", req.signal_id, req.ts, None)
            self._submit(("nats", corr), confirm)
            return
        if kind != "http":  # the webhook answers with the FastPath reply, `req_id` included
            reply.pop("req_id", None)
        reply["ts"] = now_ms()
        self.tell("http" if kind == "http" else "nats", CommandReply(corr, reply))

    def _settle_unfinal(self, key: tuple[str, str], code: str, reason: str) -> None:
        """Answer everyone waiting on `key` with a reply that is not final:
        `BUSY` (a part is restarting or not ready: nothing was done) or
        `INTERNAL` (no answer in time: the outcome is not known yet)."""
        otel.end(self.spans.pop(key, None), titan__reply="REJECTED", titan__code=code)
        pending = self.pending.pop(key, None)
        if pending is None:
            return
        self.counts["internal" if code == "INTERNAL" else "busy"] += 1
        for target, req in pending.waiters:
            self._answer(target, req, _rejected(code, reason))
        for target, req in self.held.pop(key[0], []) if key[1] == "PREPARE" else ():
            self._answer(target, req, _rejected(code, "its PREPARE did not finish; resend"))

    def _on_execution(self, report: ExecutionReport) -> None:
        conn = self.by_id.get(self.confirmed_by.get(report.signal_id, 0))
        if conn is None:
            return
        self.counts["executions"] += 1
        self._send(conn, {
            "type": "EXECUTION", "signal_id": report.signal_id,
            "client_order_id": report.client_order_id, "order_id": report.order_id,
            "status": report.status, "filled_qty": report.filled_qty, "avg_price": report.avg_price,
            "last_fill": report.last_fill, "symbol": report.symbol, "side": report.side,
            "exchange": report.exchange, "leg": report.leg,
        }, answer=False)

    def on_wakeup(self, payload: Any) -> None:
        if payload == _FLUSH:
            self._flush_armed = False
        elif payload == _REAP:
            self._reap(time.monotonic())
            self.after(_REAP_EVERY_S, _REAP)
        elif payload == _TICK:
            now = time.monotonic()
            for corr in [c for c, (_t, _r, deadline) in self.heartbeats.items() if deadline <= now]:
                target, req, _deadline = self.heartbeats.pop(corr)
                self._send_to(target, _echo(req, _rejected("INTERNAL", "the risk guard did not answer in "
                                                                      "time; resend the heartbeat")))
            for key in [k for k, p in self.pending.items() if p.deadline <= now]:
                self._settle_unfinal(key, "INTERNAL",
                                     "no answer in time; the outcome is not known yet: resend")
            self.after(_TICK_S, _TICK)
        self._flush_all()

    # --- the reply store ----------------------------------------------------------------

    def _stored(self, key: tuple[str, str]) -> dict[str, Any] | None:
        data = self.store.get(_reply_key(key))
        if data is None:
            return None
        reply = orjson.loads(data)
        reply.pop("stored_at", None)
        return reply

    def _persist(self, key: tuple[str, str], reply: dict[str, Any]) -> None:
        body = {k: v for k, v in reply.items() if k not in ("req_id", "ts", "duplicate")}
        now = now_ms()
        reply_key = _reply_key(key)
        self.store.write_batch([(reply_key, orjson.dumps({**body, "stored_at": now}, default=json_default)),
                                self.retention.index(now, [reply_key])])


def _open_reserve() -> int:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


def _refuse(sock: socket.socket, frame: bytes) -> None:
    """Say why (best effort, never blocking) and close."""
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        if frame:
            sock.send(frame)
    sock.close()



def _reply_key(key: tuple[str, str]) -> bytes:
    return f"reply:{key[1]}:{key[0]}".encode()


def _rejected(code: str, reason: str, rule: str = "") -> dict[str, Any]:
    reply = {"type": "REJECTED", "code": code, "reason": reason}
    if rule:
        reply["rule"] = rule
    return reply


def _ids(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: obj[k] for k in ("req_id",) if isinstance(obj.get(k), str)}


def _echo(req: Request, reply: dict[str, Any]) -> dict[str, Any]:
    if req.signal_id:
        reply["signal_id"] = req.signal_id
    if req.req_id is not None:
        reply["req_id"] = req.req_id
    else:
        reply.pop("req_id", None)
    return reply


def _reply_of(msg: Any) -> dict[str, Any]:
    if isinstance(msg, OrderPrepared):
        return {"type": "PREPARED", "signal_id": msg.signal_id, "expires_at": msg.expires_at,
                "order": msg.order}
    if isinstance(msg, OrderAccepted):
        return {"type": "ACCEPTED", "signal_id": msg.signal_id,
                "client_order_id": msg.client_order_id, "exchange": msg.exchange}
    if isinstance(msg, OrderAborted):
        return {"type": "ABORTED", "signal_id": msg.signal_id}
    if isinstance(msg, OrderCanceled):
        return {"type": "CANCELED", "signal_id": msg.signal_id, "client_order_id": msg.client_order_id}
    return {**_rejected(msg.code, msg.reason, msg.rule), "signal_id": msg.signal_id}
