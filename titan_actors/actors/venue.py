"""The venue adapter actor: one per configured venue, the only actor that
talks to it — the paper venue or an exchange reached through ccxt, all
through one interface (`venues.exchange.Exchange`); which one it has is
never asked here.

Orders live in its journal (`<data>/venues/<name>`): `o:<client_order_id>`
holds the order, `live:<client_order_id>` marks one that is not final. The
client order id is derived from the signal, so every command finds its order
without an index, and a repeated command finds the order it made before.

- `StageOrder` (PREPARE, from the risk guard): the order is normalised to
  the venue's step, tick and minimums and journaled as PREPARED with its
  expiry; a repeat answers the same order.
- `SubmitOrder` (CONFIRM): journaled CONFIRMED/SUBMITTED first, then created
  at the venue with its client order id (the side effect last). The CONFIRM
  is answered when the venue answered: ACCEPTED, or VENUE_REJECTED with the
  venue's message for a sure refusal, VENUE_UNAVAILABLE when the request
  never reached it. Until then the gateway answers INTERNAL at its timeout
  and a resent CONFIRM waits for the same outcome (never a second create).
- `AbortOrder`, `CancelOrder`, kill switches, expiry of unconfirmed orders,
  market data (handed to the venue, and to the stops the engine emulates).
- Every order change goes as an `ExecutionReport` to the gateway (EXECUTION
  to the sender) and durably to the symbol's position actor and the outbox.
- Brackets: once an entry is filled, its reduce-only exits are placed (a
  stop for `stop_loss`, limits for `take_profits`) and fitted to what
  filled; when the signal's exits have closed what it opened, the rest are
  canceled. Ladders (one entry over several prices) and algo parents (sent
  by their algo actor as children) are orders of this journal too.

Every call to the venue goes through the `Pacer`: a token bucket below the
venue's published limit, cancels first, one request at a time per order. A
CONFIRM that would wait longer than `max_queue_wait_ms` is refused `BUSY`
before anything is journaled.

- An unknown outcome (timeout, 5xx, rate limit, lost connection) is looked
  up by client order id — after an exponential backoff — before any resend;
  a look-up that fails is retried, never skipped. Not at the venue and still
  within the order's `ttl_ms` of its confirmation: created again with the
  same client order id (a duplicate answer means it was placed: looked up
  again). Not at the venue and past its ttl: REJECTED, not sent.
- Fills come over the venue's private stream (`watch`: trades and order
  updates) as they happen, and from polling our trades (every page of them)
  every `poll_interval_ms` while orders are live, with the venue's trade
  ids, into the journal, the position actor's deliveries and the outbox; a
  trade seen both ways is applied once. Open orders are polled too; an
  order gone from them is looked up for its final status, which is applied
  once the fills that led to it have arrived.
- After a restart, before any new order is taken (`BUSY` meanwhile), every
  order journaled as sent but never answered is looked up and resolved as
  above, the exits of filled entries fitted again, the algo actors of
  running parents started again.
- Bracket stops: held by the venue where it can (`holds_stops`: the paper
  venue, Bybit); elsewhere (`stops = "emulated"`) the stop is held here,
  ACCEPTED under the order id `emulated:<client order id>`, and sent as a
  reduce-only market order when the last price of the symbol's market data
  reaches the trigger.

Failure: a handler or callback that raises crashes the actor (let it
crash); the supervisor restarts it and the journal tells it what to resolve.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import replace
from decimal import Decimal
from functools import partial
from typing import Any

from supervisors.tree import algo_spec, position_spec, reconcile_settings
from titan_actors.domain.brackets import fit_exits
from titan_actors.domain.dead_man import countdowns
from titan_actors.domain.ids import client_order_id, exit_order_id
from titan_actors.domain.money import ZERO, Instrument, split_quantity
from titan_actors.domain.orders import (
    EMULATED,
    FINAL_STATUSES,
    Fill,
    Order,
    Refused,
    apply_fill,
    arm_emulated_stop,
    close_reason,
    combined,
    decide,
    expire,
    fill_problem,
    fire_emulated_stop,
    order_from_intent,
    stop_triggered,
    with_status,
)
from titan_actors.domain.reconciliation import FillInFlight
from titan_actors.domain.throttle import backoff_s
from titan_actors.domain.trading_state import SendGate, effective_state, send_gate
from titan_actors.messages import (
    AbortOrder,
    AlgoDone,
    AlgoProgress,
    AlgoStatus,
    AlgoStatusRequest,
    CancelExits,
    CancelOpenOrders,
    CancelOrder,
    CommandRefused,
    ExecutionReport,
    FlattenPositions,
    OpenOrdersCanceled,
    OrderAborted,
    OrderAccepted,
    OrderCanceled,
    OrderDropped,
    OrderPrepared,
    PaperAdjust,
    PaperPlace,
    PositionHeld,
    PositionQuery,
    PositionsFlattened,
    PriceUpdate,
    PriceUpdates,
    ReconcileNow,
    ReservationCheck,
    SetVenueOutage,
    StageOrder,
    StartChild,
    StatesApplied,
    SubmitOrder,
    TradingStates,
    VenueHealth,
    VenueOrders,
    VenueOrdersRequest,
    VenueState,
    VenueStateRequest,
)
from titan_actors.runtime import otel
from titan_actors.runtime.actor import TitanActor, count_boot
from titan_actors.runtime.clock import now_ms
from titan_actors.runtime.histogram import Histogram
from titan_actors.runtime.retention import Retention
from titan_actors.runtime.store import Store
from titan_actors.runtime.trace import trace
from titan_actors.venues.errors import DuplicateClientOrderId, VenueRejected, VenueUnreachable
from titan_actors.venues.exchange import Exchange, OrderUpdate, open_exchange, order_status
from titan_actors.venues.pacing import Pacer, Request
from titan_actors.wire import subjects

__all__ = ["OrderJournal", "VenueAdapter"]

log = logging.getLogger(__name__)

_TICK = "venue:tick"
_POSITION_ASK = "position-ask"
_MARKETS = "venue:markets"
_POLL = "venue:poll"
_CANCEL_AFTER = "cancel-after"
_PROBE = "probe"
#: Orders whose fills' reports carry their trace (the newest kept).
_TRACED_ORDERS = 10_000
#: `fit:<signal id>`: a bracket entry whose exits may not fit what filled yet.
FIT_KEY = b"fit:"
#: `kid:<parent signal id>:<client order id>`: the children of an algo parent.
KID_KEY = b"kid:"
_TICK_S = 0.02
_PROBLEMS_KEPT = 1000
GATEWAY = "gateway"
_MAX_WAITERS = 16
#: Fills are looked for from this long before the oldest live order's confirmation.
_TRADES_MARGIN_MS = 5_000
#: A guard against a venue whose pages never end; the next poll starts again.
_MAX_TRADES_PER_SCAN = 20_000
_QUOTE_FRESH_S = 30
_TRADES_REMEMBERED = 50_000


class OrderJournal:
    """The adapter's orders: live ones in memory, every one in the store."""

    def __init__(self, store: Store, retention: Retention) -> None:
        self.store = store
        self.retention = retention
        self.live: dict[str, Order] = {}
        for key, _ in store.items(b"live:"):
            coid = key[5:].decode()
            data = store.get(b"o:" + coid.encode())
            if data is not None:
                self.live[coid] = Order.from_json(data)

    def get(self, coid: str) -> Order | None:
        order = self.live.get(coid)
        if order is not None:
            return order
        data = self.store.get(b"o:" + coid.encode())
        return Order.from_json(data) if data is not None else None

    def by_order_id(self, order_id: str) -> Order | None:
        """The journaled order the venue calls `order_id` (kept as long as the order)."""
        coid = self.store.get(b"oid:" + order_id.encode())
        return self.get(coid.decode()) if coid is not None else None

    def writes(self, order: Order) -> list[tuple[bytes, bytes | None]]:
        """The writes of `order`; one that becomes final is retired after the
        engine's retention."""
        coid = order.client_order_id.encode()
        writes: list[tuple[bytes, bytes | None]] = [(b"o:" + coid, order.to_json()),
                                                    (b"live:" + coid, None if order.final else b"")]
        by_id = [b"oid:" + order.order_id.encode()] if order.order_id else []
        if by_id:
            writes.append((by_id[0], coid))
        if order.parent:  # an algo child: found from its parent
            kid = KID_KEY + order.parent.encode() + b":" + coid
            writes.append((kid, coid))
            by_id.append(kid)
        if order.final:
            if self.live.pop(order.client_order_id, None) is not None or self.store.get(b"o:" + coid) is None:
                writes.append(self.retention.index(order.updated_at or now_ms(),
                                                               [b"o:" + coid, *by_id]))
        else:
            self.live[order.client_order_id] = order
        return writes


class VenueAdapter(TitanActor):
    needs = ("gateway", "positions", "position:", "risk", "nats")

    def on_start(self) -> None:
        cfg = self.config
        self.venue_name = cfg["name"]
        self.exchange = cfg.get("exchange", "paper")
        self.store = self.open_store(f"venues/{self.venue_name}")
        self.boots = count_boot(self.store)
        self.journal = OrderJournal(self.store, self.open_retention(self.store))
        self.open_outbox(self.store)
        self.open_deliveries(self.store)
        # The reports made while a symbol's venue figures are being asked for
        # (`_state_of`): one list per question in flight.
        self.learning: dict[str, list[list[ExecutionReport]]] = {}
        self.order_spans: dict[str, Any] = {}  # client order id → its open "venue send" span (tracing on)
        self.order_traces: OrderedDict[str, str] = OrderedDict()  # client order id → traceparent
        self.consecutive_errors = 0
        self.states: dict[str, str] | None = None  # from the risk guard; None: not known yet
        self.position_asks: dict[str, Any] = {}  # corr → what to do with a `PositionHeld`
        self.quotes: dict[str, PriceUpdate] = {}  # symbol → its last quote (algo actors follow it)
        self.counts = {"staged": 0, "submitted": 0, "rejected": 0, "fills": 0, "halted_at_send": 0,
                       "bad_venue_data": 0}
        # What the venue reported that could not be applied (key → why; the newest kept).
        self.venue_data_problems: OrderedDict[str, str] = OrderedDict()
        self.flagged: dict[str, str] = {}  # client order id → what was wrong with its venue data
        # Exits kept back by a halt (client order id → why), sent when the state allows.
        self.held_exits: dict[str, str] = {}
        assert self.engine is not None
        self.client: Exchange = open_exchange(cfg, data_dir=self.engine.data_dir,
                                              retention_ms=self.engine.retention_ms)
        # An account on a higher tier has a higher published limit.
        published = float(cfg.get("published_limit_per_s") or self.client.published_limit_per_s)
        rate = float(cfg.get("rate_limit_per_s") or self.client.default_rate_per_s)
        self.pacer = Pacer(
            rate=min(rate, published),
            published=published,
            max_wait_s=int(cfg.get("max_queue_wait_ms", 1000)) / 1000,
            now=time.monotonic(),
        )
        self.poll_s = int(cfg.get("poll_interval_ms", 1000)) / 1000
        self.backoff_s = (
            int(cfg.get("retry_backoff_ms", 200)) / 1000,
            int(cfg.get("retry_backoff_max_ms", 5000)) / 1000,
        )
        self.markets_ready = False
        self.connection = "connecting"
        self.last_error = ""
        self.resolving: set[str] | None = None  # orders to resolve after a restart; None: not begun
        self.waiters: dict[tuple[str, str], list[str]] = {}  # (client order id, command) → reply_to
        self.attempts: dict[str, int] = {}
        self.held: dict[str, tuple[str, Decimal]] = {}  # a final status waiting for its fills
        self.calls = {"requests": 0, "errors": 0}
        self.round_trip = Histogram()  # seconds from sending a request to handling its answer
        off = "" if cfg.get("stream", True) else "stream = false"
        self.stream_error = self.client.stream_unavailable or off
        self.stream = "off" if self.stream_error else "connecting"
        self.streaming = False
        self._polls = 0
        # Stops the venue holds itself, or the engine holds and sends as a market order.
        stops = cfg.get("stops", "auto")
        self.emulate_stops = stops == "emulated" or (stops == "auto" and not self.client.holds_stops)
        self.armed: dict[str, str] = {  # client order id → symbol of an emulated stop not yet fired
            o.client_order_id: o.symbol for o in self.journal.live.values()
            if o.order_id.startswith(EMULATED) and o.order_type == "stop"}
        self.quoted: dict[str, float] = {}  # symbol → monotonic time of its last quote
        # Trade ids applied (or of orders already final): a poll that sees them again skips them.
        self.trades_done: OrderedDict[Any, None] = OrderedDict()
        # Dead man's switches: symbol → timeout_ms wanted, and what the exchange has armed.
        self.countdowns: dict[str, int] = {}
        self.countdowns_armed: dict[str, int] = {}
        self.aio = self.async_host()
        # Orders journaled but never answered are resolved once the markets
        # and the trading states are known (a halt set meanwhile forbids sending them).
        self._load_markets(0)
        self.after(_TICK_S, _TICK)
        self.after(self.poll_s, _POLL)
        self.after(1.0, _CANCEL_AFTER)

    def status_detail(self) -> dict[str, Any]:
        now = time.monotonic()
        bucket = self.pacer.bucket
        return {
            "boots": self.boots, "venue": self.venue_name, "exchange": self.exchange,
            "consecutive_errors": self.consecutive_errors,
            "market": self.config.get("market", ""), "live_orders": len(self.journal.live), **self.counts,
            "held_exits": dict(list(self.held_exits.items())[:100]), "trading_states": self.states,
            "venue_data_problems": dict(list(self.venue_data_problems.items())[-20:]),
            "flagged": {c: r for c, r in self.flagged.items() if c in self.journal.live},
            "in_flight": [{"client_order_id": o.client_order_id, "symbol": o.symbol, "status": o.status,
                           "age_ms": now_ms() - o.confirmed_at}
                          for o in self.journal.live.values() if o.stage == "CONFIRMED"][:100],
            "connection": self.connection,
            "last_error": self.last_error,
            "stops": "emulated" if self.emulate_stops else "native",
            "armed_stops": len(self.armed),
            # Emulated stops fire from market data: these symbols have none fresh.
            "stops_without_prices": sorted({s for s in self.armed.values()
                                            if now - self.quoted.get(s, -_QUOTE_FRESH_S) > _QUOTE_FRESH_S}),
            "rate_limit": {
                "limit_per_s": bucket.rate,
                "published_per_s": self.pacer.published,
                "headroom": round(bucket.available(now), 2),
                "queued": len(self.pacer.queue),
                "running": len(self.pacer.busy_keys),
            },
            "resolving": len(self.resolving or ()),
            "stream": self.stream,
            "stream_error": self.stream_error,
            "round_trip_s": self.round_trip.snapshot(),
            **self.calls,
            **self.client.status(),  # the venue's own figures (the paper venue's book)
        }

    def handle(self, msg: Any, sender: Any) -> None:
        match msg:
            case StageOrder():
                self._stage(msg)
            case SubmitOrder():
                self._submit(msg)
            case AbortOrder():
                self._abort(msg)
            case CancelOrder():
                self._cancel(msg)
            case PriceUpdate():
                self._on_price(msg)
            case PriceUpdates():
                for quote in msg.quotes:
                    self._on_price(quote)
            case CancelOpenOrders():
                canceled, dropped = self._cancel_scope(msg.scope, msg.reason, msg.operator)
                done = OpenOrdersCanceled(self.venue_name, canceled, dropped, msg.corr)
                self.tell(sender, done, via="thespian")
            case FlattenPositions():
                self._flatten(msg, sender)
            case CancelExits():
                log.warning("venue %s: %s is flat at the venue: canceling its exits", self.venue_name,
                            msg.symbol)
                self._cancel_exits(None, msg.symbol)
            case AlgoStatusRequest():
                self._algo_status(msg, sender)
            case AlgoDone():
                self._algo_done(msg)
            case AlgoProgress():
                self._algo_progress(msg)
            case PositionHeld():
                then = self.position_asks.pop(msg.corr, None)
                if then is not None:
                    then(msg.qty)
            case TradingStates():
                first = self.states is None
                self.states = dict(msg.states)
                if first:
                    self._resolve_unanswered()
                self._gate_queued()
                self._release_held()
                self._cancel_after(msg.switches or {})
                self.tell("risk", StatesApplied(self.role, msg.version))
            case VenueStateRequest():
                self._venue_state(msg.symbol, sender)
            case VenueOrdersRequest():
                self._audit(sender)
            case ReservationCheck():
                for coid in msg.client_order_ids:
                    order = self.journal.get(coid)
                    if order is None or order.stage in ("ABORTED", "EXPIRED"):
                        self.tell(sender, OrderDropped(coid))
            case SetVenueOutage():
                self._simulate("outage", down=msg.down)
            case PaperAdjust():
                self._simulate("position", symbol=msg.symbol, qty=msg.qty, avg_price=msg.avg_price)
            case PaperPlace():
                self._simulate("place", spec=dict(msg.spec))
            case _:
                super().handle(msg, sender)

    def _simulate(self, action: str, **args: Any) -> None:
        """A test control of a simulated venue; a venue that cannot is left alone (logged)."""
        problem = self.client.simulate(action, **args)
        if problem:
            log.warning("venue %s: %s not simulated: %s", self.venue_name, action, problem)

    def _stage(self, msg: StageOrder) -> None:
        intent = msg.intent
        coid = client_order_id(intent.signal_id)
        order = self.journal.get(coid)
        if order is None:
            rungs, problem = self._staged(order_from_intent(intent, coid, now_ms()), intent.ladder)
            if problem:
                self.tell("risk", OrderDropped(coid))  # release what the risk guard reserved
                code = "VENUE_UNAVAILABLE" if self._unavailable_reason() else "INVALID"
                self.reply_now(msg.reply_to, CommandRefused(intent.signal_id, "PREPARE", code, problem))
                return
            self._commit(rungs)
            self.counts["staged"] += 1
            order = rungs[0]
        public = order.public()
        if order.ladder:
            public["ladder"] = [{"client_order_id": o.client_order_id, "price": o.price,
                                 "quantity": o.quantity} for o in self._rungs(order)]
        self.reply_now(msg.reply_to, OrderPrepared(intent.signal_id, public, order.expires_at))

    def _staged(self, order: Order, ladder: tuple[Decimal, ...]) -> tuple[list[Order], str]:
        """The signal's entry, normalised; a ladder's as one limit order per
        price (the quantity split on the step, the remainder on the first;
        a rung below the venue's minimum merged into the one before)."""
        if not ladder:
            normal, problem = self._normalise(order)
            return [normal], problem
        shares = split_quantity(order.quantity, len(ladder), self._instrument(order.symbol), list(ladder))
        rungs = [replace(order, client_order_id=order.client_order_id if n == 0 else
                         exit_order_id(order.signal_id, f"z{i + 1}", 1), price=ladder[i], quantity=qty)
                 for n, (i, qty) in enumerate(shares)]
        normal = []
        for rung in rungs:
            rung, problem = self._normalise(rung)
            if problem:
                return [], f"entry_zone: {problem}"
            normal.append(rung)
        return [replace(normal[0], ladder=tuple(r.client_order_id for r in normal[1:])), *normal[1:]], ""

    def _rungs(self, first: Order) -> list[Order]:
        """The orders of a signal's entry: itself, or every rung of its ladder."""
        return [first, *(o for c in first.ladder if (o := self.journal.get(c)) is not None)]

    def _entry_of(self, signal_id: str) -> Order | None:
        """The signal's entry as one order: a ladder's rungs summed (quantity,
        filled, average price), which its bracket exits follow."""
        first = self.journal.get(client_order_id(signal_id))
        if first is None or not first.ladder:
            return first
        rungs = self._rungs(first)
        filled, avg, _fees = combined((o.filled_qty, o.avg_price, o.fees) for o in rungs)
        return replace(first, quantity=sum((o.quantity for o in rungs), ZERO), filled_qty=filled,
                       avg_price=avg)

    def _submit(self, msg: SubmitOrder) -> None:
        order = self.journal.get(client_order_id(msg.signal_id))
        parent = self.journal.get(client_order_id(order.parent)) if order and order.parent else None
        if parent is not None and parent.final and order is not None and order.stage == "PREPARED":
            self.tell(msg.reply_to, CommandRefused(msg.signal_id, "CONFIRM", "ALREADY_FINAL",
                                                   f"its parent {order.parent} is {parent.status}"))
            return
        decision = decide(order, "CONFIRM", now_ms())
        if decision.refused is not None:
            if decision.order is not None:  # it expired by the clock: journal that, release its reservation
                self._commit([decision.order])
                self.tell("risk", OrderDropped(decision.order.client_order_id))
            self.tell(msg.reply_to, CommandRefused(msg.signal_id, "CONFIRM", decision.refused.code,
                                                   decision.refused.reason))
            return
        assert order is not None
        unavailable = self._unavailable_reason()
        if unavailable:
            self.tell(msg.reply_to,
                      CommandRefused(msg.signal_id, "CONFIRM", "VENUE_UNAVAILABLE", unavailable))
            return
        if decision.repeat:
            self._answer_confirmed(order, msg.reply_to)
            return
        busy = self._busy_reason() or ("the trading state is not known yet; resend" if self.states is None
                                       else "")
        if busy:
            self.tell(msg.reply_to, CommandRefused(msg.signal_id, "CONFIRM", "BUSY", busy))
            return
        assert decision.order is not None
        order = decision.order
        if order.algo is not None:
            self._start_algo(order, msg.reply_to)
            return
        span = otel.start("venue send", msg.trace, kind="client", titan__signal_id=order.signal_id,
                          titan__client_order_id=order.client_order_id, titan__venue=self.venue_name)
        if span is not None:
            self.order_spans[order.client_order_id] = span
            self.order_traces[order.client_order_id] = otel.traceparent(span)
            while len(self.order_traces) > _TRACED_ORDERS:
                self.order_traces.popitem(last=False)
        rungs = [order, *(d.order for r in self._rungs(order)[1:]
                          if (d := decide(r, "CONFIRM", now_ms())).order is not None and d.refused is None)]
        self._commit(rungs, [(r, None) for r in rungs])  # journal (and its events) before the side effect
        if span is not None:
            span.add_event("journaled")
        self.crash_point("adapter.after_journal")
        self._send_to_venue(order, msg.reply_to)
        for rung in rungs[1:]:  # a ladder: its other rungs go with it
            self._send_to_venue(rung, None)

    # --- what the venue takes -----------------------------------------------------------

    def _normalise(self, order: Order) -> tuple[Order, str]:
        """The order as the venue will take it (its step, tick and minimums;
        the bracket's prices too), or a reason it cannot."""
        market = self.client.markets.get(order.symbol)
        if market is None:
            if not self.markets_ready:
                return order, self._unavailable_reason()
            return order, f"symbol: {order.symbol} is not traded on venue {self.venue_name}"
        instrument = market.instrument
        qty = instrument.quantity(order.quantity)
        price = instrument.limit_price(order.price, order.side) if order.price is not None else None
        problem = instrument.too_small(qty, price)
        if problem:
            return order, f"quantity: {problem} on venue {self.venue_name}"
        stop = instrument.stop_price(order.stop_loss, "sell" if order.side == "buy" else "buy") \
            if order.stop_loss is not None else None
        take_profits = tuple(instrument.limit_price(p, "sell" if order.side == "buy" else "buy")
                             for p in order.take_profits)
        return replace(order, quantity=qty, price=price, stop_loss=stop, take_profits=take_profits), ""

    def _instrument(self, symbol: str) -> Instrument:
        """The venue's step, tick and minimums for `symbol`."""
        market = self.client.markets.get(symbol)
        return market.instrument if market is not None else Instrument(symbol)

    def _unavailable_reason(self) -> str:
        if self.markets_ready:
            return ""
        why = self.last_error or "connecting"
        return f"venue {self.venue_name} ({self.exchange}) is not reachable yet: {why}"

    def _busy_reason(self) -> str:
        """Why a new order cannot be taken now ("" if it can)."""
        if self.resolving is None or self.resolving:
            return "the adapter is resolving orders journaled before its restart; retry shortly"
        if self.pacer.full():
            return f"venue {self.venue_name}: requests queued beyond the rate limit; retry shortly"
        return ""

    def _answer_confirmed(self, order: Order, reply_to: str) -> None:
        """A repeated CONFIRM: the original outcome, never a second order."""
        if order.status == "SUBMITTED":
            self._resolve(order, reply_to)
        elif order.status == "REJECTED" and not order.filled_qty:
            code = order.refusal or "VENUE_REJECTED"  # the code it was refused with, when not the venue's
            self.tell(reply_to, CommandRefused(order.signal_id, "CONFIRM", code, order.reason))
        else:
            self.tell(reply_to, OrderAccepted(order.signal_id, order.client_order_id, order.exchange))

    def _send_to_venue(self, order: Order, reply_to: str | None) -> None:
        """Send a journaled order; `reply_to` is answered when the venue answers."""
        self._wait(order.client_order_id, "CONFIRM", reply_to)
        self._create(order)

    # --- the trading state at the point of sending ------------------------------------------------

    def _gated(self, order: Order, reply_to: str | None) -> Order | None:
        """`order` as it may be sent under the trading state now, or None when
        it must not be sent now (an entry is rejected with HALTED, an exit is
        held until the state allows it)."""
        gate = self._gate_of(order)
        coid = order.client_order_id
        if gate.verdict == "send":
            if self.held_exits.pop(coid, None) is not None:
                log.warning("venue %s: sending the held exit %s", self.venue_name, coid)
            if gate.reduce_only and not order.reduce_only:
                order = replace(order, reduce_only=True)
                self._commit([order])  # the journal says what was sent
            return order
        if gate.verdict == "hold":
            if coid not in self.held_exits:
                log.warning("venue %s: holding the exit %s: %s", self.venue_name, coid, gate.reason)
            self.held_exits[coid] = gate.reason
            return None
        self.counts["halted_at_send"] += 1
        code = "HALTED" if gate.verdict == "refuse" else "BUSY"
        self._reject_unsent(order, reply_to, code, gate.reason)
        return None

    def _gate_of(self, order: Order) -> SendGate:
        return send_gate(self.states, venue=order.exchange, symbol=order.symbol, side=order.side,
                         reduce_only=order.reduce_only, exit_leg=order.leg != "entry",
                         spot=self.config.get("market", "linear") == "spot", flatten=order.leg == "flatten")

    def _reject_unsent(self, order: Order, reply_to: str | None, code: str, reason: str) -> None:
        self._wait(order.client_order_id, "CONFIRM", reply_to)
        self._reject(order, reason, code)

    def _release_held(self) -> None:
        for coid in list(self.held_exits):
            order = self.journal.get(coid)
            if order is None or order.status != "SUBMITTED" or order.order_id:
                self.held_exits.pop(coid, None)
            elif self._gate_of(order).verdict == "send" and not self._sending(coid):
                self._send_to_venue(order, None)

    def _sending(self, coid: str) -> bool:
        return self.pacer.active(coid)

    def _gate_queued(self) -> None:
        # A halt refuses (or holds) what waits for a token at once, instead of
        # when its turn comes; `_pump` gates whatever is still queued again.
        for request in [r for r in self.pacer.queue if r.kind == "create"]:
            order = self.journal.get(request.key)
            if order is not None and self._gate_of(order).verdict != "send" \
                    and self.pacer.drop("create", request.key):
                self._gated(order, None)

    # --- reconciliation, audits, bad venue data ---------------------------------------------------

    def _venue_data_problem(self, symbol: str, key: str, reason: str, order: Order | None = None) -> None:
        """Something the venue reported cannot be applied: logged and counted
        once per `key`, the order flagged, and its position actor asked to
        reconcile with the venue now. Never an exception: the adapter goes on."""
        if key in self.venue_data_problems:
            return
        self.venue_data_problems[key] = reason
        if len(self.venue_data_problems) > _PROBLEMS_KEPT:
            self.venue_data_problems.popitem(last=False)
        self.counts["bad_venue_data"] += 1
        log.warning("venue %s: %s: %s", self.venue_name, symbol, reason)
        if order is not None:
            self.flagged = {c: r for c, r in self.flagged.items() if c in self.journal.live}
            self.flagged[order.client_order_id] = reason
        self.tell(f"position:{symbol}", ReconcileNow(symbol, self.venue_name, reason))

    def _audit(self, asker: Any) -> None:
        """Every journaled order, beside what the venue can tell without a request."""
        journal = {}
        for _key, value in self.store.items(b"o:"):
            o = Order.from_json(value)
            journal[o.client_order_id] = {"signal_id": o.signal_id, "symbol": o.symbol, "stage": o.stage,
                                          "status": o.status, "order_id": o.order_id, "quantity": o.quantity,
                                          "filled_qty": o.filled_qty, "leg": o.leg}
        venue, positions = self.client.book()
        self.tell(asker, VenueOrders(venue, journal, positions), via="thespian")

    def _venue_state(self, symbol: str, asker: Any) -> None:
        """Position, then open orders, then our trades since (applied as any
        poll's). The answer names the fills on their way to the position
        actor: those known before the position was asked for (it counts
        them) and those learned while asking (it may or may not)."""
        if not self.markets_ready or symbol not in self.client.markets:
            self.tell(asker, VenueState(self.venue_name, symbol, ZERO, ZERO, {}, now_ms(), available=False))
            return
        key = f"state:{symbol}"
        if self.pacer.queued("state", key):
            return  # its position is not read yet: that question answers this one too
        learned = self._start_learning(symbol)
        self._request(
            "state",
            key,
            partial(self.client.position, symbol),
            partial(self._on_state_position, symbol, asker, learned),
        )

    def _start_learning(self, symbol: str) -> list[ExecutionReport]:
        """A question about `symbol`'s figures begins: the reports made from
        now on are collected for it until `_stop_learning`."""
        learned: list[ExecutionReport] = []
        self.learning.setdefault(symbol, []).append(learned)
        return learned

    def _stop_learning(self, symbol: str, learned: list[ExecutionReport]) -> None:
        questions = self.learning.get(symbol, [])
        questions[:] = [q for q in questions if q is not learned]
        if not questions:
            self.learning.pop(symbol, None)

    def _state_of(self, symbol: str, qty: Decimal, avg: Decimal | None, orders: dict[str, dict[str, Any]],
                  learned: Sequence[ExecutionReport] = (), unmapped: Sequence[FillInFlight] = (),
                  pending: Collection[str] = ()) -> VenueState:
        """The venue's figures with what is on its way to the position actor
        (a consistent cut, `domain.reconciliation`): the fills of updates not
        yet acknowledged, which the figures count, and of updates `learned`
        while the venue was being asked, which they may or may not count;
        `unmapped`: trades that may be ours but are not mapped to an order
        yet (maybe counted); `pending`: orders whose state is not known yet."""
        assert self.deliveries is not None
        dest = f"position:{symbol}"
        waiting = [m for d, m in self.deliveries.pending.values() if d == dest]
        fills: dict[str, FillInFlight] = {}
        for reports, counted in ((waiting, True), (learned, False)):
            for report in reports:
                fill = report.last_fill
                if fill is not None:
                    trade_id = str(fill["trade_id"])
                    signed = fill["qty"] if report.side == "buy" else -fill["qty"]
                    fills[trade_id] = FillInFlight(trade_id, signed, int(fill["ts"]), counted)
        for fill in unmapped:
            fills.setdefault(fill.trade_id, fill)
        busy = frozenset(itertools.chain((m.client_order_id for m in itertools.chain(waiting, learned)),
                                         pending))
        return VenueState(self.venue_name, symbol, qty, avg, orders, now_ms(), tuple(fills.values()), busy)

    def _venue_ok(self) -> None:
        if self.consecutive_errors:
            self.consecutive_errors = 0
            self.tell("risk", VenueHealth(self.venue_name, 0))

    def _resolve(self, order: Order, reply_to: str | None) -> None:
        """A repeated CONFIRM, or a restart, for an order sent but never answered."""
        self._wait(order.client_order_id, "CONFIRM", reply_to)
        if not self.pacer.active(order.client_order_id):
            self._lookup(order)

    def _halted(self, order: Order) -> bool:
        state, _scope = effective_state(self.states or {}, venue=order.exchange, symbol=order.symbol)
        return state == "HALTED"

    def _resolve_unanswered(self) -> None:
        if not self.markets_ready or self.states is None or self.resolving is not None:
            return
        unanswered = [
            o for o in self.journal.live.values() if o.stage == "CONFIRMED" and o.status == "SUBMITTED"
        ]
        self.resolving = {o.client_order_id for o in unanswered}
        for order in unanswered:
            log.warning("venue %s: resolving %s after a restart", self.venue_name, order.client_order_id)
            self._lookup(order)
        self._refit_exits()
        self._restart_algos()

    # --- commands: abort, kill switches, flatten, cancel ------------------------------------------

    def _abort(self, msg: AbortOrder) -> None:
        decision = decide(self.journal.get(client_order_id(msg.signal_id)), "ABORT", now_ms())
        if decision.refused is not None:
            self.tell(msg.reply_to, CommandRefused(msg.signal_id, "ABORT", decision.refused.code,
                                                   decision.refused.reason))
            return
        if decision.order is not None:
            rungs = [d.order for r in self._rungs(decision.order)[1:]
                     if (d := decide(r, "ABORT", now_ms())).order is not None and d.refused is None]
            self._commit([decision.order, *rungs])
            self.tell("risk", OrderDropped(decision.order.client_order_id))
        self.tell(msg.reply_to, OrderAborted(msg.signal_id))

    def _cancel_scope(self, scope: str, reason: str,
                      operator: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Kill switch: every order of the scope here that is not final is
        canceled — staged ones dropped (a CONFIRM of them is refused), held
        exits canceled in the journal, the rest canceled at the venue (an
        unknown outcome is looked up as for any cancel). Returns the client
        order ids canceled and dropped."""
        kind, _, name = scope.partition(":")
        if kind == "venue" and name != self.venue_name:
            return (), ()
        log.warning("venue %s: canceling every open order of %s: %s (%s)", self.venue_name, scope, reason,
                    operator)
        canceled: list[str] = []
        dropped: list[str] = []
        for order in [o for o in self.journal.live.values() if kind != "symbol" or o.symbol == name]:
            coid = order.client_order_id
            if order.stage == "PREPARED":
                decision = decide(order, "ABORT", now_ms())
                if decision.order is not None:
                    self._commit([decision.order])
                    self.tell("risk", OrderDropped(coid))
                    dropped.append(coid)
            elif order.stage == "CONFIRMED" and not order.final and order.algo is not None:
                self._cancel_algo(order, f"canceled by {operator}")
                canceled.append(coid)
            elif order.stage == "CONFIRMED" and not order.final and order.leg != "flatten":
                if self.held_exits.pop(coid, None) is not None:  # never sent: nothing at the venue
                    held = with_status(order, "CANCELED", now_ms(), reason=f"canceled by {operator}")
                    self._commit([held], [(held, None)])
                    self._report(held, None)
                else:
                    self._cancel_at_venue(order, None)
                canceled.append(coid)
        return tuple(canceled), tuple(dropped)

    def _flatten(self, msg: FlattenPositions, asker: Any) -> None:
        """Kill switch: cancel the scope's orders, then close each of its
        positions here with a reduce-only market order (leg `flatten`, sent
        whatever the trading state; on spot, a sell of what the engine
        bought, never of coins that were in the wallet before)."""
        kind, _, name = msg.scope.partition(":")
        if kind == "venue" and name != self.venue_name:
            self.tell(asker, PositionsFlattened(self.venue_name, (), (), {}, corr=msg.corr), via="thespian")
            return
        canceled, dropped = self._cancel_scope(msg.scope, msg.reason, msg.operator)
        symbols = [name] if kind == "symbol" else \
            sorted(set(self.config.get("symbols", ())) | self._held_symbols())

        def answer(closing: dict[str, dict[str, Any]]) -> None:
            self.tell(asker, PositionsFlattened(self.venue_name, canceled, dropped, closing, corr=msg.corr),
                      via="thespian")

        self._close_positions(symbols, answer)

    def _ask_position(self, symbol: str, then: Any) -> None:
        """`then(qty)` with the engine's own quantity of `symbol` here, or
        `then(None)` if its position actor does not answer in 2 s."""
        corr = f"held:{symbol}:{now_ms()}:{len(self.position_asks)}"
        self.position_asks[corr] = then
        if not self.tell(f"position:{symbol}", PositionQuery(self.venue_name, corr)):
            self.position_asks.pop(corr)(None)
            return
        self.after(2.0, (_POSITION_ASK, corr))

    def _held_symbols(self) -> set[str]:
        return set(self.client.markets)  # positions are the exchange's: ask about each market

    def _close_positions(self, symbols: list[str], answer: Any) -> None:
        """Each symbol's position asked of the exchange, then closed; `answer`
        once every one is (a symbol whose position could not be read is named
        with the error: nothing was sent for it). On spot the wallet's coins
        are not all the engine's: what is sold is the engine's own quantity
        (its position actor's), at most what the wallet holds."""
        spot = self.config.get("market", "linear") == "spot"
        symbols = [s for s in symbols if s in self.client.markets
                   and (not spot or s in self.config.get("symbols", ()))]
        closing: dict[str, dict[str, Any]] = {}
        left = set(symbols)

        def close(symbol: str, qty: Decimal | None, problem: str) -> None:
            left.discard(symbol)
            if problem:
                closing[symbol] = {"error": problem}
            elif qty is not None and (sent := self._close(symbol, qty)) is not None:
                closing[symbol] = sent
            if not left:
                answer(closing)

        def read(symbol: str, ours: Decimal | None, position: Any, error: BaseException | None) -> None:
            if error is not None:
                close(symbol, None, f"position not read: {str(error)[:200]}")
            elif ours is None:  # a derivative position is the account's: all of it is closed
                close(symbol, position[0], "")
            else:
                close(symbol, max(min(ours, position[0]), ZERO), "")

        def held(symbol: str, ours: Decimal | None) -> None:
            if ours is None:
                close(symbol, None, f"position:{symbol} did not say what the engine holds")
            elif ours <= 0:
                close(symbol, None, "")
            else:
                self._request("state", f"flatten:{symbol}", partial(self.client.position, symbol),
                              partial(read, symbol, ours))

        if not symbols:
            answer(closing)
        for symbol in symbols:
            if spot:
                self._ask_position(symbol, partial(held, symbol))
            else:
                self._request("state", f"flatten:{symbol}", partial(self.client.position, symbol),
                              partial(read, symbol, None))

    def _close(self, symbol: str, qty: Decimal) -> dict[str, Any] | None:
        """Journal and send the reduce-only market order that closes `qty`."""
        quantity = self._instrument(symbol).quantity(abs(qty))
        if quantity <= 0:
            return None
        now = now_ms()
        signal_id = f"flatten-{self.venue_name}-{symbol}-{now}"
        spot = self.config.get("market", "linear") == "spot"  # a spot sell cannot grow a position
        order = Order(client_order_id=client_order_id(signal_id), signal_id=signal_id, symbol=symbol,
                      side="sell" if qty > 0 else "buy", quantity=quantity, order_type="market", price=None,
                      time_in_force="GTC", reduce_only=not spot, exchange=self.venue_name, leg="flatten",
                      stage="CONFIRMED", status="SUBMITTED", prepared_at=now, confirmed_at=now,
                      updated_at=now, reason="flatten by the operator")
        log.warning("venue %s: flatten %s: %s %s", self.venue_name, symbol, order.side, quantity)
        self._commit([order], [(order, None)])
        self._send_to_venue(order, None)
        return {"client_order_id": order.client_order_id, "quantity": quantity, "side": order.side}

    def _cancel(self, msg: CancelOrder) -> None:
        order = self.journal.get(client_order_id(msg.signal_id))
        if order is not None and order.algo is not None and order.stage == "CONFIRMED":
            if order.final:
                self.tell(msg.reply_to, CommandRefused(msg.signal_id, "CANCEL", "ALREADY_FINAL",
                                                       f"the algo order is {order.status}"))
            else:
                self._cancel_algo(order, "canceled by the client")
                self.tell(msg.reply_to, OrderCanceled(order.signal_id, order.client_order_id))
            return
        if order is not None and order.ladder:
            # A ladder: every rung still open is canceled; the answer follows the first of them.
            live = [r for r in self._rungs(order) if not r.final]
            for rung in live[1:]:
                if decide(rung, "CANCEL", now_ms()).refused is None:
                    self._cancel_at_venue(rung, None)
            order = live[0] if live else order
        decision = decide(order, "CANCEL", now_ms())
        unavailable = self._unavailable_reason()
        if decision.refused is not None:
            refused = decision.refused
        elif unavailable:
            refused = Refused("VENUE_UNAVAILABLE", unavailable)
        else:
            assert order is not None
            self._cancel_at_venue(order, msg.reply_to)
            return
        self.tell(msg.reply_to, CommandRefused(msg.signal_id, "CANCEL", refused.code, refused.reason))

    def _cancel_at_venue(self, order: Order, reply_to: str | None) -> None:
        coid = order.client_order_id
        if self.armed.pop(coid, None) is not None:  # held here: nothing at the venue to cancel
            canceled = with_status(order, "CANCELED", now_ms(), reason="emulated stop canceled")
            self._commit([canceled], [(canceled, None)])
            self._report(canceled, None)
            if reply_to is not None:
                self.reply_now(reply_to, OrderCanceled(order.signal_id, coid))
            return
        self._wait(coid, "CANCEL", reply_to)
        if not self.pacer.queued("cancel", coid):
            make = partial(self.client.cancel, client_order_id=coid, symbol=order.symbol,
                           conditional=self._held_by_venue(order))
            self._request("cancel", coid, make, partial(self._on_canceled, coid))

    # --- market data and timers -------------------------------------------------------------------

    def _on_price(self, msg: PriceUpdate) -> None:
        """Market data: to the venue (a simulated one trades on it), to the
        algo actors that ask, and to the stops the engine holds."""
        self.quotes[msg.symbol] = msg
        self.quoted[msg.symbol] = time.monotonic()
        self.client.market_data(msg.symbol, msg.bid, msg.ask, msg.last)
        for coid in [c for c, symbol in self.armed.items() if symbol == msg.symbol]:
            order = self.journal.get(coid)
            if order is None or order.final or not order.order_id.startswith(EMULATED):
                self.armed.pop(coid, None)
            elif stop_triggered(order, msg.last):
                self.armed.pop(coid)
                fired = fire_emulated_stop(order, msg.last, now_ms())
                log.warning("venue %s: %s", self.venue_name, fired.reason)
                self._commit([fired], [(fired, None)])
                self._report(fired, None)
                self._create(fired)

    def on_wakeup(self, payload: Any) -> None:
        match payload:
            case (tag, corr) if tag == _POSITION_ASK:
                then = self.position_asks.pop(corr, None)
                if then is not None:
                    then(None)
            case (tag, attempt) if tag == _MARKETS:
                self._load_markets(attempt)
            case _ if payload == _POLL:
                self._schedule_polls()
                self.after(self.poll_s, _POLL)
            case _ if payload == _CANCEL_AFTER:
                self._cancel_after_tick()
            case _ if payload == _TICK:
                self._expire_staged()
                self.after(_TICK_S, _TICK)
            case _:
                super().on_wakeup(payload)

    def _expire_staged(self) -> None:
        """Staged orders past their expiry: journaled EXPIRED, their reservations released."""
        now = now_ms()
        expired = [expire(o, now) for o in self.journal.live.values()
                   if o.stage == "PREPARED" and o.expires_at < now]
        if expired:
            self._commit(expired)
            for order in expired:
                self.tell("risk", OrderDropped(order.client_order_id))

    # --- what the venue said, onto the journal ----------------------------------------------------

    def _apply(self, updates: list[OrderUpdate]) -> list[tuple[Order, dict[str, Any] | None]]:
        """What the venue said onto the journal, with the events of each change: one batch."""
        changes: list[tuple[Order, dict[str, Any] | None]] = []
        current: dict[str, Order] = {}
        for update in updates:
            coid = update.client_order_id
            order = current.get(coid) or self.journal.get(coid)
            if order is None:
                log.error("venue %s: an update of the unknown order %s", self.venue_name, coid)
                continue
            order = with_status(order, update.status, now_ms(), order_id=update.order_id,
                                reason=update.reason)
            if update.quantity is not None and update.quantity < order.quantity:
                order = replace(order, quantity=update.quantity)  # a reduce-only order clipped
            last_fill = None
            if update.fill is not None:
                fill = update.fill
                order = with_status(apply_fill(order, fill), update.status, now_ms())
                last_fill = {"trade_id": fill.trade_id, "qty": fill.qty, "price": fill.price, "fee": fill.fee,
                             "liquidity": fill.liquidity, "ts": fill.ts}
                self.counts["fills"] += 1
            current[coid] = order
            changes.append((order, last_fill))
        self._commit(list(current.values()), changes)
        return changes

    def _after_changes(self, changes: list[tuple[Order, dict[str, Any] | None]]) -> None:
        for order, last_fill in changes:
            self._report(order, last_fill)
        for parent in sorted({o.parent for o, _ in changes if o.parent}):
            self._parent_progress(parent)
        for order, _ in changes:
            if order.leg != "entry" and order.filled_qty and self._flat(order):
                self._cancel_exits(order.signal_id, order.symbol)
            elif order.leg != "entry" or order.filled_qty > 0:
                # An entry filled (part of it), or an exit was accepted or took
                # part of the position: the exits follow.
                entry = self._entry_of(order.signal_id)
                if entry is not None and entry.filled_qty > 0 and (entry.stop_loss is not None
                                                                    or entry.take_profits):
                    self._fit_exits(entry)

    # --- brackets ---------------------------------------------------------------------------------

    def _fit_exits(self, entry: Order) -> None:
        """Place or resize the exits of `entry` to what has filled
        (`domain.brackets.fit_exits`). Until they fit, a `fit:` key marks
        the entry, so a restart fits them again (`_refit_exits`)."""
        if entry.stop_loss is None and not entry.take_profits:
            return
        plan = fit_exits(entry, self._exits_of(entry), self._instrument(entry.symbol), now_ms(),
                         amends=self._amends)
        for problem in plan.problems:
            log.error("venue %s: %s: exit not placed: %s", self.venue_name, entry.signal_id, problem)
        if plan.complete and self.store.get(FIT_KEY + entry.signal_id.encode()) is not None:
            self.store.write_batch([], [FIT_KEY + entry.signal_id.encode()])
        for exit_order in plan.place:
            if self.journal.get(exit_order.client_order_id) is not None:
                continue  # placed meanwhile (a venue that answers at once fits again)
            self._commit([exit_order], [(exit_order, None)])
            self._send_to_venue(exit_order, None)
        for leg, quantity in plan.resize:
            self._resize_at_venue(leg, quantity)
        for replaced in plan.cancel:  # its successor is at the venue
            if not self._sending(replaced.client_order_id):
                self._cancel_at_venue(replaced, None)

    def _refit_exits(self) -> None:
        """After a restart: fit the exits of every entry marked `fit:` or with
        a live exit (a fill, an exit or a resize may have been cut short)."""
        signals = {k[len(FIT_KEY):].decode() for k, _v in self.store.items(FIT_KEY)}
        signals |= {o.signal_id for o in self.journal.live.values() if o.leg != "entry"}
        for signal_id in sorted(signals):
            entry = self._entry_of(signal_id)
            if entry is not None and entry.filled_qty > 0:
                self._fit_exits(entry)
            elif entry is None:
                self.store.write_batch([], [FIT_KEY + signal_id.encode()])

    # --- algo parents (`actors.algo` sends their children) ----------------------------------------

    def _start_algo(self, parent: Order, reply_to: str) -> None:
        """A confirmed parent: ACCEPTED (nothing is sent for it), its reservation
        released (each child is checked on its own), its algo actor started."""
        accepted = with_status(parent, "ACCEPTED", now_ms(), order_id=f"algo:{parent.signal_id}")
        self._commit([accepted], [(accepted, None)])
        self.tell("risk", OrderDropped(parent.client_order_id))
        self.reply_now(reply_to, OrderAccepted(parent.signal_id, parent.client_order_id, parent.exchange))
        self._report(accepted, None)
        self._run_algo(accepted)

    def _run_algo(self, parent: Order) -> None:
        instrument = self._instrument(parent.symbol)
        self.tell("algos", StartChild(algo_spec(parent, instrument, self.role,
                                                self.config.get("vwap_profile", ()))), via="thespian")

    def _restart_algos(self) -> None:
        """After a restart: every running parent's algo actor (one already running says so)."""
        for parent in self.journal.live.values():
            if parent.algo is not None and parent.stage == "CONFIRMED":
                self._run_algo(parent)

    def _children(self, parent: str) -> list[Order]:
        return [o for _k, coid in self.store.items(KID_KEY + parent.encode() + b":")
                if (o := self.journal.get(coid.decode())) is not None]

    def _parent_progress(self, parent_signal: str) -> None:
        """A child changed: the parent's filled quantity, average and fees are
        its children's (a SPLIT's, over several venues, come from its algo actor)."""
        parent = self.journal.get(client_order_id(parent_signal))
        if parent is None or parent.final or parent.algo is None or parent.algo.get("type") == "SPLIT":
            return
        self._progressed(parent, *combined((k.filled_qty, k.avg_price, k.fees)
                                           for k in self._children(parent_signal)))

    def _algo_progress(self, msg: AlgoProgress) -> None:
        parent = self.journal.get(client_order_id(msg.parent))
        if parent is not None and not parent.final and parent.algo is not None:
            self._progressed(parent, msg.filled_qty, msg.avg_price, msg.fees)

    def _progressed(self, parent: Order, filled: Decimal, avg: Decimal, fees: Decimal) -> None:
        if filled == parent.filled_qty:
            return
        status = "FILLED" if filled >= parent.quantity else "PARTIALLY_FILLED"
        updated = replace(with_status(parent, status, now_ms()), filled_qty=filled, avg_price=avg, fees=fees)
        self._commit([updated], [(updated, None)])
        self._report(updated, None)

    def _algo_status(self, msg: AlgoStatusRequest, asker: Any) -> None:
        parent = self.journal.get(client_order_id(msg.parent))
        children = {int(child.signal_id.rpartition(".")[2]): {
            "stage": child.stage, "status": child.status, "filled_qty": child.filled_qty,
            "avg_price": child.avg_price, "fees": child.fees, "final": child.final}
            for child in self._children(msg.parent)}
        if parent is None:
            self.tell(asker, AlgoStatus(msg.parent, "", True, ZERO, children, venue=self.venue_name))
            return
        quote = self.quotes.get(parent.symbol)
        self.tell(asker, AlgoStatus(msg.parent, parent.status, parent.final, parent.filled_qty, children,
                                    quote.bid if quote else None, quote.ask if quote else None,
                                    quote.volume if quote else None, self.venue_name))

    def _algo_done(self, msg: AlgoDone) -> None:
        parent = self.journal.get(client_order_id(msg.parent))
        if parent is None or parent.final:
            return
        done = with_status(parent, msg.status, now_ms(), reason=msg.reason)
        self._commit([done], [(done, None)])
        self._report(done, None)

    def _cancel_algo(self, parent: Order, reason: str) -> None:
        """The parent ends CANCELED: its resting children are canceled, its
        staged ones dropped; its algo actor sees it final and stops."""
        for child in self._children(parent.signal_id):
            if child.stage == "PREPARED":
                decision = decide(child, "ABORT", now_ms())
                if decision.order is not None:
                    self._commit([decision.order])
                    self.tell("risk", OrderDropped(child.client_order_id))
            elif child.stage == "CONFIRMED" and not child.final:
                self._cancel_at_venue(child, None)
        canceled = with_status(parent, "CANCELED", now_ms(), reason=reason)
        self._commit([canceled], [(canceled, None)])
        self._report(canceled, None)

    # --- the exchange's cancel-all-after (dead man's switch) --------------------------------------

    def _cancel_after(self, timeouts: dict[str, int]) -> None:
        wanted = countdowns(timeouts, self.venue_name, self.config.get("symbols", ()))
        if wanted != self.countdowns:
            self.countdowns = wanted
            self._arm_cancel_after()

    def _amends(self, order: Order) -> bool:
        """The venue can change this order's quantity in place: an emulated
        stop is resized here; a venue that `amends` (the paper venue, Bybit
        through ccxt `edit_order`) changes any order; on the others (Binance's
        algo stops included) an order is replaced instead."""
        emulated = order.order_type == "stop" and self.emulate_stops
        return emulated or order.client_order_id in self.armed or self.client.amends

    def _exits_of(self, entry: Order) -> list[Order]:
        """Every journaled version of the exits of a bracket entry."""
        legs = (["sl"] if entry.stop_loss is not None else []) + [
            f"tp{i}" for i in range(1, len(entry.take_profits) + 1)]
        found: list[Order] = []
        for leg in legs:
            version = 1
            while (order := self.journal.get(exit_order_id(entry.signal_id, leg, version))) is not None:
                found.append(order)
                version += 1
        return found

    def _resized(self, order: Order, quantity: Decimal) -> None:
        """Journal and report an exit's new quantity (the venue took it)."""
        resized = replace(order, quantity=quantity, updated_at=now_ms(),
                          reason=f"resized to {quantity} to fit what filled")
        self._commit([resized], [(resized, None)])
        self._report(resized, None)

    def _resize_at_venue(self, order: Order, quantity: Decimal) -> None:
        coid = order.client_order_id
        if coid in self.armed:  # held here: resized in the journal
            self._resized(order, quantity)
            return
        if self.pacer.queued("resize", coid):
            self.pacer.drop("resize", coid)
        make = partial(self.client.resize, client_order_id=coid, symbol=order.symbol, side=order.side,
                       quantity=quantity, order_type=order.order_type, price=order.price,
                       trigger_price=order.trigger_price)
        self._request("resize", coid, make, partial(self._on_resized, coid, quantity))

    # --- journal, events, reports -----------------------------------------------------------------

    def _commit(self, orders: list[Order], reported: list[tuple[Order, dict[str, Any] | None]] = ()) -> None:
        """Orders and the events of `reported` changes: one batch."""
        puts: list[tuple[bytes, bytes]] = []
        deletes: list[bytes] = []
        writes = [w for order in orders for w in self.journal.writes(order)]
        # A bracket entry that filled: its exits are to fit it (cleared by `_fit_exits`).
        writes += [(FIT_KEY + o.signal_id.encode(), b"1") for o in orders
                   if o.leg == "entry" and o.filled_qty > 0 and (o.stop_loss is not None or o.take_profits)]
        assert self.outbox is not None and self.deliveries is not None
        for order, last_fill in reported:
            writes += self.outbox.emit(subjects.report(order.symbol), _event_type(order.status),
                                       order.symbol, _report_data(order, last_fill))
            if order.algo is not None:
                continue  # a parent is never at the venue: its children are the position's orders
            # The position actor must get every change: re-driven until acknowledged.
            report = _execution_report(order, last_fill, self.order_traces.get(order.client_order_id, ""))
            writes += self.deliveries.enqueue(f"position:{order.symbol}", report)
            for learned in self.learning.get(order.symbol, ()):
                learned.append(report)
        for key, value in writes:
            if value is None:
                deletes.append(key)
            else:
                puts.append((key, value))
        if puts or deletes:
            self.store.write_batch(puts, deletes)

    def _report(self, order: Order, last_fill: dict[str, Any] | None) -> None:
        """The EXECUTION push to the confirming connection (best effort; the
        position actor and NATS get the change durably, from `_commit`)."""
        if order.status not in ("", "SUBMITTED") and order.client_order_id in self.order_spans:
            otel.end(self.order_spans.pop(order.client_order_id), titan__status=order.status,
                     titan__order_id=order.order_id)  # the venue answered
        self.tell(GATEWAY, _execution_report(order, last_fill))
        if self.directory.get(f"position:{order.symbol}") is None:
            spec = position_spec(order.symbol, {self.venue_name: reconcile_settings(self.config)})
            self.tell("positions", StartChild(spec), via="thespian")

    def _flat(self, exit_order: Order) -> bool:
        """The signal's exits have filled as much as its entry did (the account's
        position is not ours alone on a real exchange)."""
        entry = self._entry_of(exit_order.signal_id)
        if entry is None:
            return False
        return sum((o.filled_qty for o in self._exits_of(entry)), ZERO) >= entry.filled_qty

    def _cancel_exits(self, signal_id: str | None, symbol: str) -> None:
        for order in [o for o in self.journal.live.values() if o.leg != "entry" and o.symbol == symbol
                      and signal_id in (None, o.signal_id)]:
            self._cancel_at_venue(order, None)

    # --- start, stop, markets ------------------------------------------------------------

    def release(self) -> None:
        try:
            self.aio.stop()
            self.aio.submit(self.client.close())
        except Exception:  # stopping anyway: nothing to save here
            log.exception("venue %s: closing the venue's client", self.venue_name)

    def end_of_batch(self) -> None:
        super().end_of_batch()
        self._pump()  # what the batch's results (answers, stream updates) made due

    def _load_markets(self, attempt: int) -> None:
        self.aio.submit(self.client.start(), lambda _r, error: self._on_markets(error, attempt))

    def _on_markets(self, error: BaseException | None, attempt: int) -> None:
        if error is not None:
            self._note_error(f"loading markets: {error!r}")
            self.after(self._delay(attempt), (_MARKETS, attempt + 1))
            return
        self.markets_ready, self.connection = True, "ready"
        log.info("venue %s: %d markets loaded", self.venue_name, len(self.client.markets))
        self._resolve_unanswered()
        self._follow_stream()

    def _arm_cancel_after(self) -> None:
        """Send what the switches want now, unless a request is on its way
        (its answer sends again what changed meanwhile)."""
        wanted = dict(self.countdowns)
        disarm = [s for s in self.countdowns_armed if s not in wanted]
        if not self.client.cancel_after or (not wanted and not disarm) or self.pacer.active(_CANCEL_AFTER):
            return

        def done(_result: Any, error: BaseException | None) -> None:
            if error is None:
                self.countdowns_armed = wanted
            else:  # tried again by the timer
                log.warning("venue %s: arming the exchange's cancel-all-after: %s", self.venue_name, error)
            if self.countdowns != wanted:
                self._arm_cancel_after()
        self._request("cancel_after", _CANCEL_AFTER, partial(self.client.arm_cancel_after, wanted, disarm),
                      done)

    def _cancel_after_tick(self) -> None:
        """A countdown is refreshed at a third of its timeout, so the exchange
        fires only if the engine is gone; whatever failed is sent again."""
        if self.countdowns != self.countdowns_armed or (self.countdowns and self.client.cancel_after
                                                        == "countdown"):
            self._arm_cancel_after()
        self.after(max(0.5, min(self.countdowns.values()) / 3000) if self.countdowns else 1.0, _CANCEL_AFTER)

    # --- requests through the pacer ---------------------------------------------------------------

    def _request(self, kind: str, key: str, make: Any, on_done: Any, *, delay: float = 0.0) -> None:
        """Queued; it starts at the end of this batch (`end_of_batch` → `_pump`),
        after the batch's writes are synced."""
        self.pacer.put(Request(kind, key, make, tags={"on_done": on_done}), time.monotonic(), delay=delay)

    def _pump(self) -> None:
        starting = []
        for request in self.pacer.due(time.monotonic()):
            if request.kind == "create":
                # The trading state decides at the moment of sending, not when queued.
                order = self.journal.get(request.key)
                gated = self._gated(order, None) if order is not None else None
                if gated is None:
                    self.pacer.done(request.key)
                    continue
                request.start = partial(self.client.create, **_venue_spec(gated))
            starting.append(request)
        self.sync_stores()  # a gate may have journaled what it changed: durable before it is sent
        for request in starting:
            if request.kind == "create":
                trace("venue_send", coid=request.key)
            self.calls["requests"] += 1
            request.tags["sent_at"] = time.monotonic()
            self.aio.submit(request.start(), partial(self._finished, request))

    def _finished(self, request: Request, result: Any, error: BaseException | None) -> None:
        self.pacer.done(request.key)
        self.round_trip.observe(time.monotonic() - request.tags["sent_at"])
        if error is None:
            self.connection = "ready"
            self._venue_ok()
        elif not (isinstance(error, VenueRejected) and request.kind in ("create", "cancel", "resize")):
            # A refused order is the order's fault, not the venue's: it does not count.
            self._note_error(f"{request.kind} {request.key}: {error}")
        request.tags["on_done"](result, error)

    def _note_error(self, text: str) -> None:
        self.calls["errors"] += 1
        self.last_error = text[:300]
        self.consecutive_errors += 1
        if self.markets_ready:
            self.connection = "degraded"
        self.tell("risk", VenueHealth(self.venue_name, self.consecutive_errors, self.last_error))

    def _delay(self, attempt: int) -> float:
        first, most = self.backoff_s
        return backoff_s(attempt, first_s=first, max_s=most)

    def _backoff(self, coid: str) -> float:
        attempt = self.attempts.get(coid, 0)
        self.attempts[coid] = attempt + 1
        return self._delay(attempt)

    def _wait(self, coid: str, command: str, reply_to: str | None) -> None:
        if reply_to is not None:
            waiting = self.waiters.setdefault((coid, command), [])
            if len(waiting) < _MAX_WAITERS:
                waiting.append(reply_to)

    def _answer(self, coid: str, command: str, answer: Any) -> None:
        for reply_to in self.waiters.pop((coid, command), []):
            self.reply_now(reply_to, answer)

    # --- create, look up, resolve -----------------------------------------------------------------

    def _create(self, order: Order, delay: float = 0.0) -> None:
        coid = order.client_order_id
        if order.order_type == "stop" and self.emulate_stops:
            self._arm(order)
            return
        make = partial(self.client.create, **_venue_spec(order))
        self.counts["submitted"] += 1
        self._request("create", coid, make, partial(self._on_created, coid), delay=delay)

    def _on_created(self, coid: str, result: Any, error: BaseException | None) -> None:
        order = self.journal.get(coid)
        if order is None:
            return
        if error is None:
            self.attempts.pop(coid, None)
            self.crash_point("adapter.after_venue")
            self._acknowledged(order, result)
        elif isinstance(error, DuplicateClientOrderId):
            self._lookup(order)  # placed before: learn its state
        elif isinstance(error, VenueRejected):
            self._reject(order, error.reason, "VENUE_REJECTED")
        elif isinstance(error, VenueUnreachable) and order.leg == "entry":
            self._reject(order, f"not sent: {error.reason}", "VENUE_UNAVAILABLE")
        elif isinstance(error, VenueUnreachable):  # an exit protects a position: sent once it can be
            self._create(order, delay=self._backoff(coid))
        else:
            self._lookup(order, delay=self._backoff(coid))  # unknown outcome: look before any resend

    def _lookup(self, order: Order, delay: float = 0.0) -> None:
        coid = order.client_order_id
        make = partial(self.client.fetch_by_client_id, client_order_id=coid, symbol=order.symbol,
                       conditional=self._held_by_venue(order))
        self._request("lookup", coid, make, partial(self._on_looked_up, coid), delay=delay)

    def _on_looked_up(self, coid: str, found: Any, error: BaseException | None) -> None:
        order = self.journal.get(coid)
        if order is None:
            return
        if error is not None:
            self._lookup(order, delay=self._backoff(coid))  # no answer: never resend blind
            return
        if found is not None:
            self._acknowledged(order, found)
        elif order.status != "SUBMITTED":
            log.warning("venue %s: %s (%s) is not found at the venue", self.venue_name, coid, order.status)
        elif order.leg != "entry" or (now_ms() - order.confirmed_at <= order.ttl_ms
                                       and not self._halted(order)):
            self._create(order, delay=self._backoff(coid))  # surely not placed: send it, same id
        elif self._halted(order):
            self._reject(order, "not sent: trading was halted before it could be sent", "HALTED")
        else:
            self._reject(order, "not sent: the venue could not be reached within the order's ttl",
                         "VENUE_UNAVAILABLE")
        self._resolved(coid)

    def _resolved(self, coid: str) -> None:
        if self.resolving:
            self.resolving.discard(coid)

    def _acknowledged(self, order: Order, info: dict[str, Any]) -> None:
        """The venue has the order: its state (and the fills its answer
        brought) journaled in one write, the CONFIRMs waiting answered, then
        the reports (its SUBMITTED state first, when this is the venue's
        first answer)."""
        update = self._status_update(order, info)
        updates = [update] if update is not None else []
        if info.get("trades"):
            seen = order
            if update is not None:
                seen = with_status(order, update.status, now_ms(), order_id=update.order_id)
                seen = replace(seen, quantity=update.quantity) if update.quantity is not None else seen
            updates += self._trade_updates(order.symbol, info["trades"], {order.client_order_id: seen})
        changes = self._apply(updates) if updates else []
        self._answer(
            order.client_order_id,
            "CONFIRM",
            OrderAccepted(order.signal_id, order.client_order_id, order.exchange),
        )
        if order.status == "SUBMITTED":
            self._report(order, None)  # its event was committed with the journal
        self._after_changes(changes)
        self._catch_up(order.symbol)

    def _reject(self, order: Order, reason: str, code: str) -> None:
        self.counts["rejected"] += 1
        self.attempts.pop(order.client_order_id, None)
        self._resolved(order.client_order_id)
        # The code a resent CONFIRM is told again; never BUSY, which asks for a
        # resend that could only be told BUSY again (the order is final).
        refusal = "VENUE_REJECTED" if code == "BUSY" else code
        rejected = replace(with_status(order, "REJECTED", now_ms(), reason=reason), refusal=refusal)
        self._commit([rejected], [(rejected, None)])
        refused = CommandRefused(order.signal_id, "CONFIRM", code, reason)
        self._answer(order.client_order_id, "CONFIRM", refused)
        self._report(rejected, None)

    def _venue_update(self, order: Order, info: dict[str, Any]) -> list[tuple[Order, dict[str, Any] | None]]:
        """A venue order's state onto ours (see `_status_update`)."""
        update = self._status_update(order, info)
        return self._apply([update]) if update is not None else []

    def _status_update(self, order: Order, info: dict[str, Any]) -> OrderUpdate | None:
        """What a venue order's state changes in ours (None: nothing). Fill
        statuses come only with their trades (the position actor needs each
        fill); a final status reached through fills we have not seen waits
        for them (`held`)."""
        status = order_status(info)
        filled = info.get("filled") or ZERO
        behind = filled > order.filled_qty
        current = "ACCEPTED" if order.status == "SUBMITTED" else order.status
        if status in FINAL_STATUSES and behind:
            self.held[order.client_order_id] = (status, filled)
            status = current
        elif status not in FINAL_STATUSES or status == "FILLED":
            status = current
        if behind:
            self._catch_up(order.symbol)
        order_id = str(info.get("id") or order.order_id)
        amount = info.get("amount")
        # A reduce-only order the venue clipped to the position: its fills end it at that size.
        clipped = amount if order.reduce_only and amount is not None and 0 < amount < order.quantity else None
        if status == order.status and order_id == order.order_id and clipped is None:
            return None
        return OrderUpdate(order.client_order_id, status, order_id, _venue_reason(status, info),
                           quantity=clipped)

    # --- stops the engine emulates ----------------------------------------------------------------

    def _arm(self, order: Order) -> None:
        if time.monotonic() - self.quoted.get(order.symbol, -_QUOTE_FRESH_S) > _QUOTE_FRESH_S:
            log.warning("venue %s: a stop on %s is emulated but no market data for it has arrived in %ds: "
                        "it cannot fire until some does", self.venue_name, order.symbol, _QUOTE_FRESH_S)
        armed = arm_emulated_stop(order, now_ms())
        self.armed[order.client_order_id] = order.symbol
        self._commit([armed], [(armed, None)])
        self._report(armed, None)

    def _held_by_venue(self, order: Order) -> bool:
        """A stop the venue holds until it fires (not one the engine emulates)."""
        return order.order_type == "stop" and not self.emulate_stops

    def _on_resized(self, coid: str, quantity: Decimal, _result: Any, error: BaseException | None) -> None:
        order = self.journal.get(coid)
        if order is None or order.final:
            return
        if error is not None:  # the exit keeps its size; the next change of the bracket fits it again
            log.warning("venue %s: exit %s not resized: %s", self.venue_name, coid, error)
            return
        self._resized(order, quantity)

    def _on_canceled(self, coid: str, result: Any, error: BaseException | None) -> None:
        order = self.journal.get(coid)
        if order is None:
            return
        if error is None:
            self._answer(coid, "CANCEL", OrderCanceled(order.signal_id, coid))
            self._lookup(order)  # its final state, with what filled before the cancel
        elif isinstance(error, VenueRejected):  # not open at the venue any more
            self._answer(
                coid, "CANCEL", CommandRefused(order.signal_id, "CANCEL", "ALREADY_FINAL", error.reason)
            )
            self._lookup(order)
        else:  # unknown: a cancel is safe to repeat; the waiting CANCELs keep waiting
            make = partial(self.client.cancel, client_order_id=coid, symbol=order.symbol,
                           conditional=self._held_by_venue(order))
            self._request("cancel", coid, make, partial(self._on_canceled, coid), delay=self._backoff(coid))

    # --- polling: fills and order states ----------------------------------------------------------

    def _schedule_polls(self) -> None:
        """Every `poll_interval_ms`: the trades (and every third time the open
        orders) of each symbol with live orders; while the venue is failing,
        a probe (the balances), so that it counts as reachable again as soon
        as it answers, whether or not anything else is asked of it."""
        if not self.markets_ready:
            return
        self._polls += 1
        if self.connection != "ready" and not self.pacer.active(_PROBE):
            self._request("poll", _PROBE, self.client.balances, lambda _result, _error: None)
        for symbol in sorted(
            {
                o.symbol
                for o in self.journal.live.values()
                if o.stage == "CONFIRMED" and (o.status != "SUBMITTED" or o.order_id)
            }
        ):
            self._poll_trades(symbol)
            if self._polls % 3 == 0:
                self._poll_open(symbol)

    def _catch_up(self, symbol: str) -> None:
        """Fills are due on `symbol`: while the stream is up it brings them
        (and the periodic poll catches what it missed); otherwise poll now."""
        if self.stream != "up":
            self._poll_trades(symbol)

    def _poll_trades(self, symbol: str, then: Any = None) -> None:
        """Our trades on `symbol` page by page, in one request chain; `then` gets
        every trade seen once the last page is in (or the error that ended it)."""
        if self.pacer.queued("poll", f"trades:{symbol}") and then is None:
            return
        live = [o.confirmed_at for o in self.journal.live.values() if o.symbol == symbol and o.confirmed_at]
        since = (min(live) if live else now_ms()) - _TRADES_MARGIN_MS
        self._trades_page(symbol, since, [None], [], then)

    def _trades_page(self, symbol: str, since: int, pages: list[Any], seen: list[Any], then: Any) -> None:
        make = partial(self.client.my_trades, symbol, since, pages.pop())
        done = partial(self._on_trades, symbol, since, pages, seen, then)
        self._request("poll", f"trades:{symbol}", make, done)

    def _on_trades(
        self, symbol: str, since: int, pages: list[Any], seen: list[Any], then: Any, result: Any, error: Any
    ) -> None:
        if error is None:
            trades, more = result
            self._apply_trades(symbol, trades)
            seen.extend(trades)
            pages.extend(more)
            if pages and len(seen) < _MAX_TRADES_PER_SCAN:
                self._trades_page(symbol, since, pages, seen, then)
                return
            if pages:
                log.warning("venue %s: %s: stopped after %d trades", self.venue_name, symbol, len(seen))
        if then is not None:
            then(seen, error)

    def _apply_trades(self, symbol: str, trades: list[dict[str, Any]]) -> None:
        updates = self._trade_updates(symbol, trades)
        if updates:
            self._after_changes(self._apply(updates))

    def _trade_updates(self, symbol: str, trades: list[dict[str, Any]],
                       current: dict[str, Order] | None = None) -> list[OrderUpdate]:
        """The fills of `trades` not applied before, as order updates (`current`:
        orders as they will be once what goes with these is applied)."""
        trades = [t for t in trades if t.get("id") not in self.trades_done]
        if not trades:
            return []  # all seen before (the stream and the polls repeat what the answers brought)
        by_id = {o.order_id: o for o in self.journal.live.values() if o.symbol == symbol and o.order_id}
        by_coid = {o.client_order_id: o for o in self.journal.live.values() if o.symbol == symbol}
        updates: list[OrderUpdate] = []
        current = dict(current or {})
        for trade in trades:
            order_id, coid = str(trade.get("order") or ""), str(trade.get("clientOrderId") or "")
            order = by_id.get(order_id) or by_coid.get(coid)
            if order is None:
                known = (order_id and self.journal.by_order_id(order_id)) or (coid and self.journal.get(coid))
                if known:  # a final order's trades were applied before it became final
                    self._trade_done(trade)
                elif not (self._maybe_unanswered(symbol, trade) or self._fired_stops_unknown(symbol)):
                    self._venue_data_problem(symbol, f"trade:{trade.get('id')}",
                                             f"trade {trade.get('id')} of an order the engine does not know "
                                             f"({order_id or coid or 'no order id'})")
                continue  # (maybe ours, not known by its order id yet: applied once it is)
            order = current.get(order.client_order_id, order)
            if order.status == "SUBMITTED" and not order.order_id:
                continue  # its create is not answered yet: applied by the poll its answer starts
            fill = _fill_of(trade)
            if isinstance(fill, str):
                self._venue_data_problem(symbol, f"trade:{trade.get('id')}", fill, order)
                continue
            applied = apply_fill(order, fill)
            if applied is order:
                continue  # a trade id applied before
            status = applied.status
            held = self.held.get(order.client_order_id)
            if held is not None and applied.filled_qty >= held[1]:
                status = self.held.pop(order.client_order_id)[0]  # its fills are all here now
            updates.append(OrderUpdate(order.client_order_id, status, order.order_id, fill=fill))
            self._trade_done(trade)
            current[order.client_order_id] = applied
        return updates

    def _trade_done(self, trade: dict[str, Any]) -> None:
        """Remember (the newest `_TRADES_REMEMBERED`) a trade id nothing more is to be done for."""
        self.trades_done[trade.get("id")] = None
        if len(self.trades_done) > _TRADES_REMEMBERED:
            self.trades_done.popitem(last=False)

    def _unanswered_creates(self, symbol: str) -> list[Order]:
        """Orders on `symbol` sent whose create the venue has not answered yet:
        their trades carry an order id not known here until it does."""
        return [o for o in self.journal.live.values() if o.symbol == symbol and o.stage == "CONFIRMED"
                and o.status == "SUBMITTED" and not o.order_id and o.client_order_id not in self.armed]

    def _maybe_unanswered(self, symbol: str, trade: dict[str, Any]) -> bool:
        """`trade` may belong to an order whose create is unanswered: one is, and
        the trade is not older than the oldest of them (a second allowed for
        the venue's clock; an older unknown trade cannot be theirs)."""
        unanswered = self._unanswered_creates(symbol)
        return bool(unanswered) and int(trade.get("timestamp") or 0) >= min(
            o.confirmed_at for o in unanswered) - 1000

    def _unmapped_fills(self, symbol: str, trades: list[dict[str, Any]]) -> list[FillInFlight]:
        """The trades of a state question's poll that are not mapped to an order
        here while creates are unanswered: maybe ours (the venue's figures may
        count them, the shadow does not yet), so part of the cut."""
        fills = []
        for trade in trades:
            if not self._maybe_unanswered(symbol, trade):
                continue
            order_id, coid = str(trade.get("order") or ""), str(trade.get("clientOrderId") or "")
            if (order_id and self.journal.by_order_id(order_id)) or (coid and self.journal.get(coid)):
                continue
            fill = _fill_of(trade)
            if isinstance(fill, Fill) and trade.get("side") in ("buy", "sell"):
                signed = fill.qty if trade["side"] == "buy" else -fill.qty
                fills.append(FillInFlight(fill.trade_id, signed, fill.ts, counted=False))
        return fills

    def _fired_stops_unknown(self, symbol: str) -> bool:
        """A trade of an order nobody here placed, while stops the venue holds
        are live on `symbol`: one of them may have fired as a new order (a
        Binance algo order's `actualOrderId`). Looks them up (the order they
        became is learned, and the trade is applied at the next poll); False
        when there is none."""
        stops = [o for o in self.journal.live.values() if o.symbol == symbol and self._held_by_venue(o)
                 and o.status not in ("", "SUBMITTED")]
        for stop in stops:
            if not self.pacer.active(stop.client_order_id):
                self._lookup(stop)
        return bool(stops)

    def _poll_open(self, symbol: str) -> None:
        key = f"orders:{symbol}"
        if not self.pacer.queued("poll", key):
            self._request(
                "poll", key, partial(self.client.open_orders, symbol), partial(self._on_open_orders, symbol)
            )

    def _on_open_orders(self, symbol: str, open_orders: Any, error: BaseException | None) -> None:
        if error is not None:
            return
        at_venue = {str(o.get("clientOrderId") or ""): o for o in open_orders}
        for order in [o for o in self.journal.live.values() if o.symbol == symbol and o.stage == "CONFIRMED"
                      and o.client_order_id not in self.armed and o.algo is None]:
            info = at_venue.get(order.client_order_id)
            if info is not None:
                self._after_changes(self._venue_update(order, info))
            elif not self.pacer.active(order.client_order_id):
                self._lookup(order)  # gone from the open orders: learn how it ended

    # --- the private stream: trades and order updates as they happen ------------------------------

    def _follow_stream(self) -> None:
        """Start following the venue's private stream (once). Polling goes on
        beside it: it catches what the stream missed while it was down."""
        if self.stream == "off" or self.streaming:
            return
        self.streaming = True
        for kind in ("trades", "orders"):
            watch = partial(self.client.watch, kind)
            self.aio.submit(_follow(watch, partial(self.aio.post, self._on_stream, kind), self.backoff_s))

    def _on_stream(self, kind: str, batch: Any, error: BaseException | None) -> None:
        if error is not None:
            if self.stream != "down":
                log.warning("venue %s: private stream down: %s", self.venue_name, error)
            self.stream, self.stream_error = "down", str(error)[:300]
            return
        self.stream, self.stream_error = "up", ""
        for symbol, items in batch.items():
            if kind == "trades":
                self._apply_trades(symbol, items)
            else:
                self._streamed_orders(items)

    def _streamed_orders(self, items: list[dict[str, Any]]) -> None:
        for info in items:
            order = self.journal.live.get(str(info.get("clientOrderId") or ""))  # a final one's is moot
            if order is not None and order.stage == "CONFIRMED" and order.status not in FINAL_STATUSES:
                self._after_changes(self._venue_update(order, info))

    def _on_state_position(
        self,
        symbol: str,
        asker: Any,
        learned: list[ExecutionReport],
        position: Any,
        error: BaseException | None,
    ) -> None:
        if error is not None:
            self._stop_learning(symbol, learned)
            return  # unreachable: no answer, the position actor asks again
        self._request(
            "state",
            f"state-orders:{symbol}",  # a question asked from now on reads the position again
            partial(self.client.open_orders, symbol),
            partial(self._on_state_orders, symbol, asker, learned, position),
        )

    def _on_state_orders(
        self,
        symbol: str,
        asker: Any,
        learned: list[ExecutionReport],
        position: tuple[Decimal, Decimal],
        open_orders: Any,
        error: BaseException | None,
    ) -> None:
        if error is not None:
            self._stop_learning(symbol, learned)
            return
        orders = {
            str(o.get("clientOrderId") or o.get("id")): {
                "side": o.get("side"),
                "remaining": o.get("remaining") or ZERO,
                "price": o.get("price"),
                "status": order_status(o),
            }
            for o in open_orders
        }
        for coid in [c for c, s in self.armed.items() if s == symbol]:  # held by the engine, as if there
            armed = self.journal.get(coid)
            if armed is not None:
                orders[coid] = {"side": armed.side, "remaining": armed.remaining, "price": None,
                                "status": armed.status}

        def answer(trades: Any, trades_error: BaseException | None) -> None:
            self._stop_learning(symbol, learned)
            if trades_error is None:
                qty, avg = position
                # Orders whose create is unanswered may have traded under an order id
                # not known yet: their trades are part of the cut, and they are in flight.
                unmapped = self._unmapped_fills(symbol, trades)
                pending = {o.client_order_id for o in self._unanswered_creates(symbol)}
                self.tell(asker, self._state_of(symbol, qty, avg, orders, learned, unmapped, pending))

        self._poll_trades(symbol, then=answer)


_EVENT_TYPES = {"SUBMITTED": "OrderSubmitted", "ACCEPTED": "OrderAccepted",
                "PARTIALLY_FILLED": "OrderPartiallyFilled", "FILLED": "OrderFilled",
                "CANCELED": "OrderCanceled", "REJECTED": "OrderRejected", "EXPIRED": "OrderExpired"}


def _event_type(status: str) -> str:
    return _EVENT_TYPES.get(status, "OrderUpdated")


def _report_data(order: Order, last_fill: dict[str, Any] | None) -> dict[str, Any]:
    return {"signal_id": order.signal_id, "client_order_id": order.client_order_id,
            "order_id": order.order_id, "exchange": order.exchange, "side": order.side,
            "order_type": order.order_type, "quantity": order.quantity, "price": order.price,
            "trigger_price": order.trigger_price,
            "status": order.status, "filled_qty": order.filled_qty, "avg_price": order.avg_price,
            "fees": order.fees, "last_fill": last_fill, "leg": order.leg, "reason": order.reason,
            "strategy_id": order.strategy_id, "phase": order.phase,
            "close_reason": close_reason(order.leg) if order.leg != "entry" else None,
            "arrival_price": order.arrival_price, "confirmed_at": order.confirmed_at,
            **({"algo": order.algo} if order.algo else {}),
            **({"parent": order.parent} if order.parent else {}),
            **({"extra": order.extra} if order.extra else {})}


def _execution_report(order: Order, last_fill: dict[str, Any] | None, trace: str = "") -> ExecutionReport:
    return ExecutionReport(
        signal_id=order.signal_id, client_order_id=order.client_order_id, order_id=order.order_id,
        symbol=order.symbol, side=order.side, exchange=order.exchange, status=order.status,
        filled_qty=order.filled_qty, avg_price=order.avg_price, last_fill=last_fill, leg=order.leg,
        strategy_id=order.strategy_id, phase=order.phase, ts=now_ms(), quantity=order.quantity,
        price=order.price, trace=trace,
    )


def _venue_spec(order: Order) -> dict[str, Any]:
    return {"client_order_id": order.client_order_id, "symbol": order.symbol, "side": order.side,
            "quantity": order.quantity, "order_type": order.order_type, "price": order.price,
            "trigger_price": order.trigger_price, "time_in_force": order.time_in_force,
            "reduce_only": order.reduce_only}


async def _follow(watch: Any, deliver: Any, backoff: tuple[float, float]) -> None:
    """In the loop thread: await `watch()` for ever, handing each batch (or
    error) to `deliver`; after an error, wait (exponential backoff) and go on —
    ccxt reconnects and authenticates again on the next watch."""
    failures = 0
    while True:
        try:
            batch = await watch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            deliver(None, exc)
            first, most = backoff
            await asyncio.sleep(backoff_s(failures, first_s=first, max_s=most))
            failures += 1
            continue
        failures = 0
        deliver(batch, None)


def _venue_reason(status: str, info: dict[str, Any]) -> str:
    """The venue's word on why an order was refused or expired ("" if none)."""
    if status not in ("REJECTED", "EXPIRED"):
        return ""
    return str((info.get("info") or {}).get("rejectReason") or "")


def _fill_of(trade: dict[str, Any]) -> Fill | str:
    """The fill of a ccxt trade (sizes and prices already Decimal), or why it
    cannot be one (bad venue data)."""
    if trade.get("id") is None:
        return "a trade with no id"
    for key in ("amount", "price"):
        if trade.get(key) is None:
            return f"trade {trade['id']}: no {key}"
    fee = trade.get("fee") or {}
    fill = Fill(
        trade_id=str(trade["id"]),
        qty=trade["amount"],
        price=trade["price"],
        fee=fee.get("cost") or ZERO,
        liquidity=str(trade.get("takerOrMaker") or "taker"),
        ts=int(trade.get("timestamp") or now_ms()),
    )
    return fill_problem(fill) or fill
