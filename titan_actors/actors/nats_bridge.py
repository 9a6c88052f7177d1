"""The NATS bridge actor: the engine's only NATS client
(shared/spec/nats-subjects.md).

nats-py runs on its worker's asyncio loop (`AsyncHost`); everything that
changes the bridge's state runs as one of its handlers (`post`), under the
loop's lock and in its batches.

**Events.** Producers send `PublishEvents`; the bridge writes each event to
its store (`ev:<source>:<seq>`, once), answers `EventsStored`, and publishes
it to JetStream with `Nats-Msg-Id` = `event_id`. An event leaves the store
only on its PubAck. Whatever is stored and not acknowledged is published
again every second and after every (re)connection and restart, and the
stream's duplicate window (15 min) makes a re-publish store nothing twice.
The stream `TITAN_EXECUTION` is created (or updated) on every connection.

**Commands** (core NATS request/reply), checked by `wire.commands`: header
`Titan-Signature` = hex HMAC-SHA256 of subject + "\n" + body, `ts` within the
replay window, a `nonce` not seen in it (kept in the store, so a restart does
not forget one). Place and cancel use the FastPath secret; operator
subjects only `TITAN_OPERATOR_SECRET` (`DISABLED` without one). Place and
cancel go to the gateway (FastPath idempotency and in-flight limits apply),
halt and resume to the risk guard, status to the root. Errors are
`{"error": CODE, ...}`: `DISABLED`, `BAD_SIGNATURE`, `STALE`, `REPLAYED`,
`INVALID` (with `reason`), `UNAVAILABLE` when the actor behind the command is
restarting or does not answer within 5 s.

**Market data.** Ticker and book messages are parsed (`quote_of`: the symbol
from the subject; crossed, non-positive or non-finite quotes dropped and
counted in `quotes_dropped`) and coalesced in the loop thread (the newest
quote per symbol wins) and handed to the actor every
20 ms as one `PriceUpdates` per peer: the risk guard, the position actor of
each symbol, every venue adapter. A flood of ticks costs this process, not
the actor system.

Failure: nats-py reconnects forever; while disconnected, events wait in the
store and commands cannot arrive. A callback that raises crashes the bridge
(let it crash); its store keeps every unpublished event.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from titan_actors.actors.jetstream import AckedPublisher
from titan_actors.actors.operator import (
    OPERATOR_ANSWERS,
    KillSwitchRounds,
    OperatorRefusal,
    operator_answer,
    operator_command,
)
from titan_actors.domain.dead_man import MIN_TIMEOUT_MS
from titan_actors.domain.money import json_default, to_decimal
from titan_actors.domain.routing import Book, book_of
from titan_actors.domain.signals import HEARTBEAT, Refusal, parse_intent
from titan_actors.messages import (
    CancelByNats,
    CommandReply,
    EventsStored,
    Heartbeat,
    LedgerEvents,
    PlaceOrder,
    PriceUpdate,
    PriceUpdates,
    PublishEvents,
    SetTradingState,
    TreeStatus,
    TreeStatusRequest,
)
from titan_actors.runtime.actor import TitanActor, count_boot
from titan_actors.runtime.clock import now_ms
from titan_actors.secret import read_nats_auth, read_secret, redact_url
from titan_actors.wire import subjects
from titan_actors.wire.commands import CommandError, ReplayGuard, verify_command
from titan_actors.wire.events import Event

__all__ = ["NatsBridge", "connect_options", "quote_of"]

log = logging.getLogger(__name__)

_TICK = "nats:tick"
_TICK_S = 0.25
#: The events the ledger keeps: orders, positions, closed trades.
_LEDGER = (subjects.report(""), subjects.truth(""), subjects.TRADE_CLOSED)
_REPUBLISH_S = 1.0
_COMMAND_TIMEOUT_S = 5.0
_QUOTE_FLUSH_S = 0.02
_PUBLISH_CHUNK = 500
_NONCE = b"nonce:"


def connect_options(config: dict[str, Any]) -> dict[str, Any]:
    """nats-py `connect()` keyword arguments from the `[nats]` config: the
    embedded server's credentials (`auth_file`), or what is configured for an
    external one (user and password, in the URL or apart, a token, a creds
    file, an nkey seed, TLS).

    Failure: UnsafeFileError when the auth file is not private to us."""
    opts: dict[str, Any] = {
        "servers": [config["url"]],
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "connect_timeout": 2,
        "name": "titan-execution",
    }
    if config.get("auth_file"):
        auth = read_nats_auth(Path(config["auth_file"]).parent)
        opts["user"], opts["password"] = auth["user"], auth["password"]
    if config.get("user"):
        opts["user"], opts["password"] = config["user"], config.get("password", "")
    if config.get("token"):
        opts["token"] = config["token"]
    if config.get("creds_file"):
        opts["user_credentials"] = config["creds_file"]
    if config.get("nkey_seed_file"):
        opts["nkeys_seed"] = config["nkey_seed_file"]
    if config.get("tls_ca_file") or config.get("tls_cert_file"):
        import ssl

        ctx = ssl.create_default_context(cafile=config.get("tls_ca_file") or None)
        if config.get("tls_cert_file"):
            ctx.load_cert_chain(config["tls_cert_file"], config.get("tls_key_file") or None)
        opts["tls"] = ctx
    return opts



class NatsBridge(TitanActor):
    needs = ("gateway", "risk", "positions", "venue:", "ledger")

    def on_start(self) -> None:
        self.store = self.open_store("bridge")
        self.boots = count_boot(self.store)
        assert self.engine is not None
        cfg = self.config
        self.secret = read_secret(self.engine.data_dir, cfg.get("hmac_secret", ""))
        # Never the FastPath secret: a strategy must not be able to lift a halt.
        self.operator_secret = cfg["operator_secret"].encode() if cfg.get("operator_secret") else None
        self.window_ms = int(cfg.get("replay_window_ms", 5000))
        self.nonces = ReplayGuard(self.window_ms, {
            k[len(_NONCE):].decode(): int(v) for k, v in self.store.items(_NONCE)})
        self.stream = cfg.get("stream", "TITAN_EXECUTION")
        self.venues = {n: frozenset(s) for n, s in cfg.get("venues", {}).items()}
        self.known_symbols = frozenset(cfg.get("symbols", ())).union(*self.venues.values())
        self.default_venue = cfg.get("default_venue", "paper")
        # At most `max_events_in_memory` unpublished events in memory; the rest wait
        # in the store (spilled) and are read back as the memory drains.
        self.max_in_memory = int(cfg.get("max_events_in_memory", 20_000))
        self.unsent: dict[bytes, Event] = {}
        self.spilled = False
        self._refill()
        self.inflight: set[bytes] = set()
        self.open_deliveries(self.store)
        self.waiting: dict[str, tuple[str, float]] = {}
        # Just inside the command timeout: what the adapters that answered did, not "no answer".
        self.kill_switches = KillSwitchRounds(_COMMAND_TIMEOUT_S - _TICK_S)
        self.counts = {"stored": 0, "published": 0, "commands": 0, "quotes": 0, "publish_errors": 0,
                       "refused": 0, "replayed": 0}
        self.connected = False
        self.connects = 0
        self.last_error = ""
        self.nc: Any = None
        self.js: Any = None
        self.publisher: AckedPublisher | None = None
        self._latest: dict[str, PriceUpdate] = {}
        self._books: dict[tuple[str, str], Book] = {}  # (symbol, venue) → its newest L2 book
        # Kept by the loop's callbacks (not handlers): plain counters, read by status.
        self.quotes_dropped = 0
        self.last_dropped = ""
        self._flush_scheduled = False
        self.aio = self.async_host()
        self.aio.submit(self._connect_forever(), self._on_connected)
        self.after(_TICK_S, _TICK)

    # --- connection -----------------------------------------------------------------

    async def _connect_forever(self) -> Any:
        import nats

        opts = connect_options(self.config)
        opts["disconnected_cb"] = self._cb(self._on_disconnected)
        opts["reconnected_cb"] = self._cb(self._on_reconnected)
        opts["error_cb"] = self._error_cb
        delay = 0.1
        while True:
            try:
                nc = await nats.connect(**opts)
                break
            except Exception as exc:  # no server yet: keep trying, the engine runs on
                self.aio.post(self._note_error, f"connect: {exc!r}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        js = nc.jetstream()
        await self._ensure_stream(js)
        publisher = AckedPublisher(nc, on_results=lambda results: self.aio.post(self._on_published, results))
        await publisher.start()
        for subject in subjects.COMMANDS:
            await nc.subscribe(subject, queue="titan", cb=self._on_command_msg)
        await nc.subscribe(f"{subjects.MARKET_TICKER}.*", cb=self._on_quote_msg)
        await nc.subscribe(f"{subjects.MARKET_BOOK}.*", cb=self._on_quote_msg)
        return nc, js, publisher

    async def _ensure_stream(self, js: Any) -> None:
        """Create the stream with the configured limits; an existing one keeps
        every setting an operator gave it, and only gains what the engine
        needs (its subjects, a duplicate window of at least 10 minutes)."""
        import dataclasses

        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            max_age = self.config.get("stream_max_age_s", 0)
            max_bytes = self.config.get("stream_max_bytes", 0)
            await js.add_stream(StreamConfig(
                name=self.stream, subjects=list(subjects.EVENT_SUBJECTS), storage=StorageType.FILE,
                duplicate_window=900.0, max_age=float(max_age) if max_age else None,
                max_bytes=int(max_bytes) if max_bytes else None))
            return
        existing = info.config
        changes: dict[str, Any] = {}
        wanted = list(dict.fromkeys([*(existing.subjects or []), *subjects.EVENT_SUBJECTS]))
        if wanted != list(existing.subjects or []):
            changes["subjects"] = wanted
        if (existing.duplicate_window or 0) < 600:
            changes["duplicate_window"] = 900.0
        if changes:
            await js.update_stream(dataclasses.replace(existing, **changes))

    def _cb(self, fn: Any) -> Any:
        async def callback() -> None:
            self.aio.post(fn)

        return callback

    async def _error_cb(self, exc: Exception) -> None:
        self.aio.post(self._note_error, repr(exc))

    def _on_connected(self, result: Any, error: BaseException | None) -> None:
        if error is not None:
            raise error
        self.nc, self.js, self.publisher = result
        self.connected = True
        self.connects += 1
        log.info("nats bridge connected to %s", redact_url(self.config["url"]))
        self._publish_unsent()

    def _on_disconnected(self) -> None:
        self.connected = False

    def _on_reconnected(self) -> None:
        self.connected = True
        self.connects += 1
        # A restarted server may have lost a stream it had not synced: make sure.
        self.aio.submit(self._ensure_stream(self.js), lambda _r, e: e and self._note_error(repr(e)))
        self._publish_unsent()

    def _note_error(self, text: str) -> None:
        self.last_error = text

    def release(self) -> None:
        """Closes the connection too (a subscription left behind would take
        commands that nobody answers); the worker lets the close finish."""
        self.aio.stop()
        if self.nc is not None:
            self.aio.submit(self.nc.close())

    # --- events ---------------------------------------------------------------------

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, PublishEvents):
            self._store_events(msg, sender)
        elif isinstance(msg, CommandReply):
            self._respond(msg.corr, msg.reply)
        elif isinstance(msg, OPERATOR_ANSWERS):
            if (answer := operator_answer(msg, self.kill_switches)) is not None:
                self._respond(*answer)
        elif isinstance(msg, TreeStatus):
            self._respond(msg.req_id, _status_reply(msg))

        else:
            super().handle(msg, sender)

    def _refill(self) -> None:
        """Read spilled events back from the store, oldest first, up to the bound."""
        self.spilled = False
        for key, value in self.store.items(b"ev:"):
            if len(self.unsent) >= self.max_in_memory:
                self.spilled = True
                return
            if key not in self.unsent:
                self.unsent[key] = Event.from_json(value)

    def _store_events(self, msg: PublishEvents, sender: Any) -> None:
        puts = []
        for event in msg.events:
            key = _event_key(event)
            if key not in self.unsent and self.store.get(key) is None:
                if len(self.unsent) < self.max_in_memory:
                    self.unsent[key] = event
                else:
                    self.spilled = True
                puts.append((key, event.to_json()))
        if puts:
            # The ledger learns each stored event too, re-driven until it says it has it.
            assert self.deliveries is not None
            stored = {key for key, _ in puts}
            fresh = tuple(e for e in msg.events if _event_key(e) in stored and e.subject.startswith(_LEDGER))
            ledger = self.deliveries.enqueue("ledger", LedgerEvents(fresh)) if fresh else []
            self.store.write_batch(puts + ledger)
            self.counts["stored"] += len(puts)
        # Acknowledged whether new or seen: the producer may drop them now.
        self.tell(sender, EventsStored(msg.source, tuple(e.seq for e in msg.events)), urgent=False)
        if puts:
            self._publish_unsent()

    def _publish_unsent(self) -> None:
        if not self.connected or self.publisher is None:
            return
        keys = sorted(k for k in self.unsent if k not in self.inflight)
        for start in range(0, len(keys), _PUBLISH_CHUNK):
            chunk = keys[start:start + _PUBLISH_CHUNK]
            self.inflight.update(chunk)
            items = [(k, e.subject, e.envelope(), {"Nats-Msg-Id": e.event_id})
                     for k, e in ((k, self.unsent[k]) for k in chunk)]
            self.aio.submit(self.publisher.publish(items), lambda _result, error, chunk=chunk:
                            error is not None and self._publish_failed(chunk, error))

    def _publish_failed(self, chunk: list[bytes], error: BaseException) -> None:
        """Not even handed to the connection: the next tick tries again."""
        self.inflight.difference_update(chunk)
        self.counts["publish_errors"] += len(chunk)
        self.last_error = f"publish: {error!r}"

    def _on_published(self, results: list[tuple[bytes, str | None]]) -> None:
        acked = []
        for key, error in results:
            self.inflight.discard(key)
            if error is not None:
                self.counts["publish_errors"] += 1
                self.last_error = f"publish: {error}"
            elif self.unsent.pop(key, None) is not None:
                acked.append(key)
        if acked:
            self.store.write_batch((), deletes=acked)
            self.counts["published"] += len(acked)
        if self.spilled and len(self.unsent) < self.max_in_memory // 2 and not self.inflight:
            self._refill()
            self._publish_unsent()

    def on_wakeup(self, payload: Any) -> None:
        if payload != _TICK:
            return
        now = time.monotonic()
        if self.connected and self.unsent and now - getattr(self, "_last_republish", 0.0) >= _REPUBLISH_S:
            self._last_republish = now
            if self.inflight and self.publisher is not None:
                self.aio.loop.call_soon_threadsafe(self.publisher.sweep)  # answers lost in a reconnect
            self._publish_unsent()
        forgotten = self.nonces.expired(now_ms())
        if forgotten:
            self.store.write_batch((), deletes=[_NONCE + n.encode() for n in forgotten])
        for corr, reply in self.kill_switches.expired():  # what the adapters that answered did
            self._respond(corr, reply)
        for corr, (_reply_to, deadline) in list(self.waiting.items()):
            if deadline <= now:
                self._respond(corr, {"error": "UNAVAILABLE",
                                     "reason": "the engine part behind this command did not answer in time"})
        self.after(_TICK_S, _TICK)

    # --- commands -------------------------------------------------------------------

    async def _on_command_msg(self, msg: Any) -> None:
        self.aio.post(self._on_command, msg.subject, msg.data, dict(msg.headers or {}), msg.reply)

    def _on_command(self, subject: str, body: bytes, headers: dict[str, str], reply_to: str) -> None:
        self.counts["commands"] += 1
        if not reply_to:
            return
        corr = uuid.uuid4().hex
        self.waiting[corr] = (reply_to, time.monotonic() + _COMMAND_TIMEOUT_S)
        operator = subject.startswith(subjects.OPERATOR_PREFIX)
        command = verify_command(subject, body, headers, now_ms=now_ms(), window_ms=self.window_ms,
                                 secret=self.operator_secret if operator else self.secret)
        if isinstance(command, CommandError):
            self.counts["refused"] += 1
            self._respond(corr, command.reply())
            return
        if not self.nonces.first_time(command["nonce"], command["ts"]):
            self.counts["replayed"] += 1
            self._respond(corr, {"error": "REPLAYED"})
            return
        # Remembered before anything is done, so a restart does not forget it.
        self.store.put(_NONCE + command["nonce"].encode(), b"%d" % command["ts"])
        route = {
            subjects.CMD_PLACE: self._place, subjects.CMD_CANCEL: self._cancel,
            subjects.CMD_HALT: self._operator("halt"), subjects.CMD_RESUME: self._operator("resume"),
            subjects.CMD_CANCEL_ALL: self._operator("cancel_all"),
            subjects.CMD_FLATTEN: self._operator("flatten"),
            subjects.CMD_STATUS: self._status, subjects.CMD_HEARTBEAT: self._heartbeat,
        }[subject]
        route(corr, command)

    def _place(self, corr: str, command: dict[str, Any]) -> None:
        intent = parse_intent(command, venues=self.venues, default_venue=self.default_venue)
        if isinstance(intent, Refusal):
            self._respond(corr, {"error": "INVALID", "reason": intent.reason})
            return
        self._forward(corr, "gateway", PlaceOrder(intent, corr))

    def _cancel(self, corr: str, command: dict[str, Any]) -> None:
        signal_id = command.get("signal_id")
        if not isinstance(signal_id, str) or not signal_id:
            self._respond(corr, {"error": "INVALID", "reason": "signal_id: missing"})
            return
        self._forward(corr, "gateway", CancelByNats(signal_id, corr))

    def _operator(self, kind: str) -> Any:
        def route(corr: str, body: dict[str, Any]) -> None:
            command = operator_command(kind, body, set(self.venues))
            if isinstance(command, OperatorRefusal):
                self._respond(corr, {"error": "INVALID", "reason": command.reason})
            elif command.kind in ("halt", "resume"):
                self._forward(corr, "risk", SetTradingState(command.mode, command.scope, command.reason,
                                                            command.operator, corr))
            else:
                self.kill_switches.start(self, corr, command, sorted(self.venues))
        return route

    def _heartbeat(self, corr: str, body: dict[str, Any]) -> None:
        problem = HEARTBEAT.problem(body)
        timeout = body.get("timeout_ms", 0)
        if problem is None and 0 < timeout < MIN_TIMEOUT_MS:
            problem = f"timeout_ms: must be 0 (disarm) or at least {MIN_TIMEOUT_MS}"
        if problem is not None:
            self._respond(corr, {"error": "INVALID", "reason": problem})
        else:
            self._forward(corr, "risk", Heartbeat(body.get("scope", "global"), timeout, corr))

    def _status(self, corr: str, _command: dict[str, Any]) -> None:
        self._forward(corr, "root", TreeStatusRequest(timeout_s=1.5, req_id=corr), via="thespian")

    def _forward(self, corr: str, role: str, msg: Any, via: str = "lane") -> None:
        if not self.tell(role, msg, via=via):
            self._respond(corr, {"error": "UNAVAILABLE", "reason": f"{role} is restarting; try again"})

    def _respond(self, corr: str, reply: dict[str, Any]) -> None:
        waiting = self.waiting.pop(corr, None)
        if waiting is None or self.nc is None:
            return
        reply_to, _deadline = waiting
        self.aio.submit(self.nc.publish(reply_to, orjson.dumps(reply, default=json_default)))

    # --- market data -----------------------------------------------------------------

    async def _on_quote_msg(self, msg: Any) -> None:
        try:
            quote = quote_of(msg.subject, msg.data, now_ms())
            if quote.symbol not in self.known_symbols:  # bounded: no state for markets we do not trade
                raise ValueError("not a symbol of any configured venue")
            book = self._venue_book(msg.subject, msg.data, quote)
        except ValueError as exc:
            self.quotes_dropped += 1
            self.last_dropped = f"{msg.subject}: {exc}"
            return
        if book is not None:
            self._books[(book.symbol, book.venue)] = book
        self._coalesce(quote)

    def _venue_book(self, subject: str, data: bytes, quote: PriceUpdate) -> Book | None:
        """Loop thread: a book message that names its venue, for smart routing."""
        if not subject.startswith(subjects.MARKET_BOOK):
            return None
        body = orjson.loads(data)
        venue = body.get("venue")
        if venue is None:
            return None
        if venue not in self.venues or quote.symbol not in self.venues[venue]:
            raise ValueError(f"venue {venue!r} does not trade {quote.symbol}")
        book = book_of(venue, quote.symbol, body, quote.ts)
        if isinstance(book, str):
            raise ValueError(book)
        return book

    def _coalesce(self, quote: PriceUpdate) -> None:
        """Loop thread: keep only the newest quote per symbol until the next flush."""
        self._latest[quote.symbol] = quote
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.aio.loop.call_later(_QUOTE_FLUSH_S, self._flush_quotes)

    def _flush_quotes(self) -> None:
        latest, self._latest = self._latest, {}
        books, self._books = self._books, {}
        self._flush_scheduled = False
        self.aio.post(self._send_quotes, tuple(latest.values()), tuple(books.values()))

    def _send_quotes(self, quotes: tuple[PriceUpdate, ...], books: tuple[Book, ...] = ()) -> None:
        self.counts["quotes"] += len(quotes)
        everything = PriceUpdates(quotes, books)
        self.tell("risk", everything)
        for peer in self.directory.peers:
            if peer.role.startswith("venue:"):
                self.tell(peer.role, everything)
        for quote in quotes:
            role = f"position:{quote.symbol}"
            if self.directory.get(role) is not None:
                self.tell(role, PriceUpdates((quote,)))

    # --- status ---------------------------------------------------------------------

    def status_detail(self) -> dict[str, Any]:
        oldest = min((e.ts for e in self.unsent.values()), default=None)
        return {
            "boots": self.boots, "url": redact_url(self.config["url"]), "connected": self.connected,
            "connects": self.connects, "last_error": self.last_error,
            "outbox_depth": len(self.unsent), "spilled": self.spilled,
            "oldest_unsent_ms": now_ms() - oldest if oldest is not None else None,
            "stream": self.stream, "quotes_dropped": self.quotes_dropped, "last_dropped": self.last_dropped,
            **self.counts,
        }


def _event_key(event: Event) -> bytes:
    return f"ev:{event.source}:{event.seq:016d}".encode()


_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")


def _price(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a price is not a number")
    price = to_decimal(value, field="price")
    if price <= 0:
        raise ValueError("a price is not a finite positive number")
    return price


def quote_of(subject: str, data: bytes, now_ms: int) -> PriceUpdate:
    """The quote of a ticker or book message. The symbol is the subject's last
    token (a body's `symbol` is not trusted to say which market it is); `ts`
    is the body's, never later than now. ValueError says why a message is
    dropped: bad JSON, a missing or non-positive or non-finite price, a
    crossed quote (bid > ask)."""
    symbol = subject.rsplit(".", 1)[-1]
    if not _SYMBOL.fullmatch(symbol):
        raise ValueError(f"{symbol!r} is not an exchange-style symbol")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    try:
        if subject.startswith(subjects.MARKET_BOOK):
            bid, ask = _price(body["bids"][0][0]), _price(body["asks"][0][0])
            last = (bid + ask) / 2
        else:
            bid, ask = _price(body.get("bid")), _price(body.get("ask"))
            last = _price(body["last"]) if body.get("last") is not None else (bid + ask) / 2
    except (KeyError, IndexError, TypeError):
        raise ValueError("a price is missing") from None
    if bid > ask:
        raise ValueError(f"crossed quote: bid {bid} > ask {ask}")
    ts = body.get("ts")
    valid = isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts) and ts > 0
    ts = min(int(ts), now_ms) if valid else now_ms
    volume = body.get("volume")
    if volume is not None:
        if isinstance(volume, bool) or not isinstance(volume, int | float) or not math.isfinite(volume) \
                or volume < 0:
            raise ValueError("volume is not a finite number >= 0")
        volume = to_decimal(volume, field="volume")
    return PriceUpdate(symbol, bid, ask, last, ts, volume)


def _status_reply(tree: TreeStatus) -> dict[str, Any]:
    actors = [{"role": a.role, "pid": a.pid, "restarts": a.restarts, "state": a.state}
              for a in sorted(tree.actors, key=lambda a: a.role)]
    risk = next((a for a in tree.actors if a.role == "risk"), None)
    venues = [{"venue": a.role.split(":", 1)[1], "state": a.state,
               "positions": a.detail.get("positions", {}), "open_orders": a.detail.get("open_orders", 0)}
              for a in tree.actors if a.role.startswith("venue:")]
    positions = [{"symbol": a.role.split(":", 1)[1], **{k: v for k, v in a.detail.items()
                                                        if k not in ("peers", "lanes", "directory_version")}}
                 for a in tree.actors if a.role.startswith("position:")]
    return {
        "trading_state": risk.detail.get("trading_state", "UNKNOWN") if risk else "UNKNOWN",
        "states": risk.detail.get("states", {}) if risk else {},
        "actors": actors, "missing": list(tree.missing), "venues": venues, "positions": positions,
    }
