"""The venue adapter actor: one per configured exchange, the only actor that
talks to it.

Orders live in its journal (`<data>/venues/<name>`): `o:<client_order_id>`
holds the order, `live:<client_order_id>` marks one that is not final. The
client order id is derived from the signal, so every command finds its order
without an index, and a repeated command finds the order it made before.

- `StageOrder` (PREPARE, from the risk guard): the order is journaled as
  PREPARED with its expiry; a repeat answers the same order.
- `SubmitOrder` (CONFIRM): journal CONFIRMED, then send to the venue (the
  side effect last); answer ACCEPTED, or VENUE_REJECTED. A repeat answers the
  original outcome; an order journaled but never answered by the venue is
  looked up by client order id first and sent only if the venue does not
  have it.
- `AbortOrder`, `CancelOrder`, expiry of unconfirmed orders, market data.
- Every order change goes as an `ExecutionReport` to the gateway (EXECUTION
  to the sender) and to the symbol's position actor.
- Brackets: once an entry is filled, its reduce-only exits are placed (a
  stop for `stop_loss`, limits for `take_profits`); when the position is flat
  the remaining exits are canceled.

At start, before any command, every journaled order the venue never answered
is resolved: adopted if the venue has it, else sent if it is still within its
`ttl_ms` of its confirmation, else rejected as not sent.

The paper venue is built in; exchanges reached through ccxt are served by
the subclass in `ccxt_adapter`, which overrides the venue-facing hooks
(`_open_venue`, `_send_to_venue`, `_resolve`, `_cancel_at_venue`, ...).
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from supervisors.tree import algo_spec, position_spec, reconcile_settings
from titan_actors.domain.brackets import fit_exits
from titan_actors.domain.ids import client_order_id, exit_order_id
from titan_actors.domain.money import ZERO, Instrument, split_quantity, to_decimal, to_decimal_or_none
from titan_actors.domain.orders import (
    Order,
    Refused,
    apply_fill,
    close_reason,
    combined,
    decide,
    expire,
    order_from_intent,
    with_status,
)
from titan_actors.domain.reconciliation import FillInFlight
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
from titan_actors.runtime.retention import Retention
from titan_actors.runtime.store import Store
from titan_actors.venues.errors import DuplicateClientOrderId, VenueRejected
from titan_actors.venues.paper import (
    OPEN_KEY,
    ORDER_KEY,
    PaperSettings,
    PaperVenue,
    VenueEvent,
    VenueOrder,
)
from titan_actors.wire import subjects

__all__ = ["OrderJournal", "VenueAdapter"]

log = logging.getLogger(__name__)

_TICK = "venue:tick"
_POSITION_ASK = "position-ask"
#: Orders whose fills' reports carry their trace (the newest kept).
_TRACED_ORDERS = 10_000
#: `fit:<signal id>`: a bracket entry whose exits may not fit what filled yet.
FIT_KEY = b"fit:"
#: `kid:<parent signal id>:<client order id>`: the children of an algo parent.
KID_KEY = b"kid:"
_TICK_S = 0.02
_PROBLEMS_KEPT = 1000
GATEWAY = "gateway"



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
        """The writes of `order`; one that becomes final is retired (with the
        paper venue's record of it) after the engine's retention."""
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
                writes.append(self.retention.index(order.updated_at or now_ms(), [b"o:" + coid,
                                                                                   ORDER_KEY + coid, *by_id]))
        else:
            self.live[order.client_order_id] = order
        return writes


class VenueAdapter(TitanActor):
    needs = ("gateway", "positions", "position:", "risk", "nats")

    def on_start(self) -> None:
        self.venue_name = self.config["name"]
        self.exchange = self.config.get("exchange", "paper")
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
        self.venue_down = False
        self.consecutive_errors = 0
        self.states: dict[str, str] | None = None  # from the risk guard; None: not known yet
        self.venue: PaperVenue | None = None
        self.position_asks: dict[str, Any] = {}  # corr → what to do with a `PositionHeld`
        self.quotes: dict[str, PriceUpdate] = {}  # symbol → its last quote (algo actors follow it)
        self.counts = {"staged": 0, "submitted": 0, "rejected": 0, "fills": 0, "halted_at_send": 0,
                       "bad_venue_data": 0}
        # What the venue reported that could not be applied (key → why; the newest kept).
        self.venue_data_problems: OrderedDict[str, str] = OrderedDict()
        self.flagged: dict[str, str] = {}  # client order id → what was wrong with its venue data
        # Exits kept back by a halt (client order id → why), sent when the state allows.
        self.held_exits: dict[str, str] = {}
        self.venue = self._open_venue()
        # Orders journaled but never answered are resolved once the trading
        # states are known (a halt set meanwhile forbids sending them).
        self.after(_TICK_S, _TICK)

    def _open_venue(self) -> PaperVenue | None:
        return self._open_paper()

    def _open_paper(self) -> PaperVenue:
        cfg = self.config
        defaults = PaperSettings({})
        settings = PaperSettings(
            reference_prices={s: to_decimal(p, field=f"reference_prices.{s}")
                              for s, p in cfg.get("reference_prices", {}).items()},
            latency_ms=int(cfg.get("latency_ms", 0)),
            **{name: to_decimal(cfg.get(name, getattr(defaults, name)), field=name)
               for name in ("slippage_bps", "taker_fee_bps", "maker_fee_bps", "liquidity", "balance")},
        )

        def load(coid: str) -> VenueOrder | None:
            data = self.store.get(ORDER_KEY + coid.encode())
            return VenueOrder.from_json(data) if data is not None else None

        venue = PaperVenue(settings, load_order=load)
        venue.restore(self.store.get(b"paper:account"), (v for _k, v in self.store.items(OPEN_KEY)))
        return venue

    def status_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "boots": self.boots, "venue": self.venue_name, "exchange": self.exchange,
            "down": self.venue_down, "consecutive_errors": self.consecutive_errors,
            "market": self.config.get("market", ""), "live_orders": len(self.journal.live), **self.counts,
            "held_exits": dict(list(self.held_exits.items())[:100]), "trading_states": self.states,
            "venue_data_problems": dict(list(self.venue_data_problems.items())[-20:]),
            "flagged": {c: r for c, r in self.flagged.items() if c in self.journal.live},
            "in_flight": [{"client_order_id": o.client_order_id, "symbol": o.symbol, "status": o.status,
                           "age_ms": now_ms() - o.confirmed_at}
                          for o in self.journal.live.values() if o.stage == "CONFIRMED"][:100],
        }
        if self.venue is not None:
            venue = self.venue
            detail["positions"] = {s: {"qty": q, "avg_price": a} for s, (q, a) in venue.positions.items()}
            detail["balance"] = venue.balance
            detail["open_orders"] = len(venue.open)
            detail["orders_placed"] = venue.seq
        return detail

    # --- commands -------------------------------------------------------------------

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, StageOrder):
            self._stage(msg)
        elif isinstance(msg, SubmitOrder):
            self._submit(msg)
        elif isinstance(msg, AbortOrder):
            self._abort(msg)
        elif isinstance(msg, CancelOrder):
            self._cancel(msg)
        elif isinstance(msg, PriceUpdate):
            self.quotes[msg.symbol] = msg
            self._on_price(msg)
        elif isinstance(msg, PriceUpdates):
            for quote in msg.quotes:
                self.quotes[quote.symbol] = quote
                self._on_price(quote)
        elif isinstance(msg, CancelOpenOrders):
            canceled, dropped = self._cancel_scope(msg.scope, msg.reason, msg.operator)
            done = OpenOrdersCanceled(self.venue_name, canceled, dropped, msg.corr)
            self.tell(sender, done, via="thespian")
        elif isinstance(msg, FlattenPositions):
            self._flatten(msg, sender)
        elif isinstance(msg, CancelExits):
            log.warning("venue %s: %s is flat at the venue: canceling its exits", self.venue_name, msg.symbol)
            self._cancel_exits(None, msg.symbol)
        elif isinstance(msg, SetVenueOutage):
            self.venue_down = msg.down
        elif isinstance(msg, AlgoStatusRequest):
            self._algo_status(msg, sender)
        elif isinstance(msg, AlgoDone):
            self._algo_done(msg)
        elif isinstance(msg, AlgoProgress):
            self._algo_progress(msg)
        elif isinstance(msg, PositionHeld):
            then = self.position_asks.pop(msg.corr, None)
            if then is not None:
                then(msg.qty)
        elif isinstance(msg, TradingStates):
            first = self.states is None
            self.states = dict(msg.states)
            if first:
                self._resolve_unanswered()
            self._gate_queued()
            self._release_held()
            self._cancel_after(msg.switches or {})
            self.tell("risk", StatesApplied(self.role, msg.version))
        elif isinstance(msg, VenueStateRequest):
            self._venue_state(msg.symbol, sender)
        elif isinstance(msg, VenueOrdersRequest):
            self._audit(sender)
        elif isinstance(msg, ReservationCheck):
            for coid in msg.client_order_ids:
                order = self.journal.get(coid)
                if order is None or order.stage in ("ABORTED", "EXPIRED"):
                    self.tell(sender, OrderDropped(coid))
        elif isinstance(msg, PaperAdjust) and self.venue is not None:
            self.venue.positions[msg.symbol] = (to_decimal(msg.qty), to_decimal(msg.avg_price))
            self.venue._save_account()
            self._commit([])
        elif isinstance(msg, PaperPlace) and self.venue is not None:
            spec = {**msg.spec, "quantity": to_decimal(msg.spec["quantity"], field="quantity"),
                    **{k: to_decimal_or_none(msg.spec.get(k), field=k) for k in ("price", "trigger_price")}}
            self.venue.submit(spec, now_ms())
            self._commit([])
        else:
            super().handle(msg, sender)

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

    # --- hooks a venue of another kind overrides ---------------------------------------

    def _normalise(self, order: Order) -> tuple[Order, str]:
        """The order as the venue will take it, or a reason it cannot."""
        return order, ""

    def _instrument(self, symbol: str) -> Instrument:
        """The venue's step, tick and minimums for `symbol` (the paper venue has none)."""
        return Instrument(symbol)

    def _unavailable_reason(self) -> str:
        return "" if self.venue is not None else f"venue {self.venue_name} ({self.exchange}) is not available"

    def _busy_reason(self) -> str:
        """Why a new order cannot be taken now ("" if it can)."""
        return ""

    def _answer_confirmed(self, order: Order, reply_to: str) -> None:
        """A repeated CONFIRM: the original outcome, never a second order."""
        if order.status == "SUBMITTED":
            self._resolve(order, reply_to)
        elif order.status == "REJECTED" and not order.filled_qty:
            self.tell(reply_to, CommandRefused(order.signal_id, "CONFIRM", "VENUE_REJECTED", order.reason))
        else:
            self.tell(reply_to, OrderAccepted(order.signal_id, order.client_order_id, order.exchange))

    def _send_to_venue(self, order: Order, reply_to: str | None) -> None:
        """Send a journaled order; answer `reply_to` first, then report SUBMITTED
        and what the venue did (the gateway routes EXECUTIONs to the connection
        it answered)."""
        assert self.venue is not None
        gated = self._gated(order, reply_to)
        if gated is None:
            return
        order = gated
        now = now_ms()
        if self.venue_down:
            self._unreachable(order, reply_to, "the venue cannot be reached (simulated outage); not sent")
            return
        # The paper venue lives in this store: its book and the journal are
        # written in one batch, so this is not a side effect beyond the store.
        try:
            events = self.venue.submit(_venue_spec(order), now)
        except DuplicateClientOrderId as dup:
            events = [VenueEvent(dup.order)]  # already placed: adopt what the venue has
        except VenueRejected as exc:
            self.counts["rejected"] += 1
            rejected = with_status(order, "REJECTED", now, reason=exc.reason)
            self._commit([rejected], [(rejected, None)])
            if reply_to is not None:
                self.tell(reply_to, CommandRefused(order.signal_id, "CONFIRM", "VENUE_REJECTED", exc.reason))
            self._report(rejected, None)
            return
        self.counts["submitted"] += 1
        self._venue_ok()
        changes = self._apply(events)
        self.crash_point("adapter.after_venue")
        if reply_to is not None:
            self.reply_now(reply_to, OrderAccepted(order.signal_id, order.client_order_id, order.exchange))
        self._report(order, None)  # SUBMITTED (its event was committed with the journal)
        self._after_changes(changes)

    # --- the trading state at the point of sending ----------------------------------------

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
        rejected = with_status(order, "REJECTED", now_ms(), reason=reason)
        self._commit([rejected], [(rejected, None)])
        if reply_to is not None:
            self.tell(reply_to, CommandRefused(order.signal_id, "CONFIRM", code, reason))
        self._report(rejected, None)

    def _release_held(self) -> None:
        for coid in list(self.held_exits):
            order = self.journal.get(coid)
            if order is None or order.status != "SUBMITTED" or order.order_id:
                self.held_exits.pop(coid, None)
            elif self._gate_of(order).verdict == "send" and not self._sending(coid):
                self._send_to_venue(order, None)

    def _sending(self, coid: str) -> bool:
        """A send of `coid` is under way (queued or running)."""
        return False

    def _gate_queued(self) -> None:
        """The trading state changed: orders waiting to be sent are gated now."""

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
        venue = {}
        if self.venue is not None:
            for _key, value in self.store.items(ORDER_KEY):
                o = VenueOrder.from_json(value)
                venue[o.client_order_id] = {"symbol": o.symbol, "side": o.side, "status": o.status,
                                            "filled_qty": o.filled_qty, "fills": o.fills,
                                            "created_ts": o.created_ts, "quantity": o.quantity}
        journal = {}
        for _key, value in self.store.items(b"o:"):
            o = Order.from_json(value)
            journal[o.client_order_id] = {"signal_id": o.signal_id, "symbol": o.symbol, "stage": o.stage,
                                          "status": o.status, "order_id": o.order_id, "quantity": o.quantity,
                                          "filled_qty": o.filled_qty, "leg": o.leg}
        positions = {s: q for s, (q, _a) in self.venue.positions.items()} if self.venue else {}
        self.tell(asker, VenueOrders(venue, journal, positions), via="thespian")

    def _venue_state(self, symbol: str, asker: Any) -> None:
        """The venue's own figures for a symbol, for reconciliation. No answer
        while the venue cannot be reached: the position actor asks again."""
        if self.venue is None:
            self.tell(asker, VenueState(self.venue_name, symbol, ZERO, ZERO, {}, now_ms(), available=False))
            return
        if self.venue_down:
            return
        qty, avg = self.venue.positions.get(symbol, (ZERO, ZERO))
        orders = {o.client_order_id: {"side": o.side, "remaining": o.remaining, "price": o.price,
                                      "status": o.status}
                  for o in self.venue.open.values() if o.symbol == symbol}
        self.tell(asker, self._state_of(symbol, qty, avg, orders))

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

    def _unreachable(self, order: Order, reply_to: str | None, reason: str) -> None:
        """Not sent: answer VENUE_UNAVAILABLE and count it for the circuit breaker."""
        self.consecutive_errors += 1
        rejected = with_status(order, "REJECTED", now_ms(), reason=reason)
        self._commit([rejected], [(rejected, None)])
        if reply_to is not None:
            self.tell(reply_to, CommandRefused(order.signal_id, "CONFIRM", "VENUE_UNAVAILABLE", reason))
        self._report(rejected, None)
        self.tell("risk", VenueHealth(self.venue_name, self.consecutive_errors, reason))

    def _venue_ok(self) -> None:
        if self.consecutive_errors:
            self.consecutive_errors = 0
            self.tell("risk", VenueHealth(self.venue_name, 0))

    def _resolve(self, order: Order, reply_to: str | None) -> None:
        """An order journaled as sent whose venue answer we never got."""
        assert self.venue is not None
        at_venue = self.venue.find(order.client_order_id)
        if at_venue is not None:
            changes = self._apply([VenueEvent(at_venue)])
            if reply_to is not None:
                self.tell(reply_to, OrderAccepted(order.signal_id, order.client_order_id, order.exchange))
            self._after_changes(changes)
        elif order.leg != "entry" or (now_ms() - order.confirmed_at <= order.ttl_ms
                                       and not self._halted(order)):
            self._send_to_venue(order, reply_to)  # an exit protects a position: always (gated)
        else:
            reason = ("not sent: trading was halted before it could be sent" if self._halted(order)
                      else "not sent: the engine restarted before sending it and its ttl has passed")
            rejected = with_status(order, "REJECTED", now_ms(), reason=reason)
            self._commit([rejected], [(rejected, None)])
            if reply_to is not None:
                self.tell(reply_to, CommandRefused(order.signal_id, "CONFIRM", "VENUE_REJECTED", reason))
            self._report(rejected, None)

    def _halted(self, order: Order) -> bool:
        state, _scope = effective_state(self.states or {}, venue=order.exchange, symbol=order.symbol)
        return state == "HALTED"

    def _resolve_unanswered(self) -> None:
        if self.venue is None:
            return
        for order in [o for o in self.journal.live.values() if o.stage == "CONFIRMED"
                      and o.status == "SUBMITTED"]:
            log.warning("venue %s: resolving %s after a restart", self.venue_name, order.client_order_id)
            self._resolve(order, None)
        self._refit_exits()
        self._restart_algos()

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
        """Symbols the venue holds a position in (the paper venue's book)."""
        assert self.venue is not None
        return {s for s, (qty, _avg) in self.venue.positions.items() if qty}

    def _close_positions(self, symbols: list[str], answer: Any) -> None:
        """Close the venue's position in each of `symbols`; `answer(closing)`."""
        assert self.venue is not None
        closing = {}
        for symbol in symbols:
            sent = self._close(symbol, self.venue.positions.get(symbol, (ZERO, ZERO))[0])
            if sent is not None:
                closing[symbol] = sent
        answer(closing)

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
        assert self.venue is not None
        try:
            events = self.venue.cancel(order.client_order_id, now_ms())
        except VenueRejected as exc:
            if reply_to is not None:
                self.tell(reply_to, CommandRefused(order.signal_id, "CANCEL", "ALREADY_FINAL", exc.reason))
            return
        changes = self._apply(events)
        if reply_to is not None:
            self.tell(reply_to, OrderCanceled(order.signal_id, order.client_order_id))
        self._after_changes(changes)

    # --- the venue's side -----------------------------------------------------------

    def _on_price(self, msg: PriceUpdate) -> None:
        if self.venue is not None:
            self._after_changes(self._apply(self.venue.on_quote(msg.symbol, msg.bid, msg.ask, msg.last,
                                                                 now_ms())))

    def on_wakeup(self, payload: Any) -> None:
        if isinstance(payload, tuple) and payload[0] == _POSITION_ASK:
            then = self.position_asks.pop(payload[1], None)
            if then is not None:
                then(None)
            return
        if payload != _TICK:
            return
        now = now_ms()
        expired = [expire(o, now) for o in self.journal.live.values()
                   if o.stage == "PREPARED" and o.expires_at < now]
        if expired:
            self._commit(expired)
            for order in expired:
                self.tell("risk", OrderDropped(order.client_order_id))
        if self.venue is not None and self.venue.next_due() and self.venue.next_due() <= now:
            self._after_changes(self._apply(self.venue.run_due(now)))
        self.after(_TICK_S, _TICK)

    def _apply(self, events: list[VenueEvent]) -> list[tuple[Order, dict[str, Any] | None]]:
        """Venue events onto the journal, committed with the venue's own state."""
        changes: list[tuple[Order, dict[str, Any] | None]] = []
        current: dict[str, Order] = {}
        for event in events:
            coid = event.order.client_order_id
            order = current.get(coid) or self.journal.get(coid)
            if order is None:
                log.error("venue %s: event for unknown order %s", self.venue_name, coid)
                continue
            order = with_status(order, event.order.status, now_ms(), order_id=event.order.order_id,
                                reason=event.order.reason)
            if event.order.quantity < order.quantity:
                order = replace(order, quantity=event.order.quantity)  # reduce-only clipped it
            last_fill = None
            if event.fill is not None:
                order = with_status(apply_fill(order, event.fill), event.order.status, now_ms())
                last_fill = {"trade_id": event.fill.trade_id, "qty": event.fill.qty,
                             "price": event.fill.price, "fee": event.fill.fee,
                             "liquidity": event.fill.liquidity, "ts": event.fill.ts}
                self.counts["fills"] += 1
            elif event.order.filled_qty > order.filled_qty:  # adopted from the venue
                order = replace(order, filled_qty=event.order.filled_qty, avg_price=event.order.avg_price)
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

    # --- algo parents (`actors.algo` sends their children) ---------------------------------

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

    def _cancel_after(self, _timeouts: dict[str, int]) -> None:
        """The armed dead man's switches (scope → timeout_ms): an exchange
        adapter keeps the exchange's own cancel-all-after armed for what they
        cover. The paper venue lives and dies with the engine: nothing to arm."""

    def _amends(self, _order: Order) -> bool:
        """The venue can change this order's quantity in place."""
        return True

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
        assert self.venue is not None
        try:
            self.venue.resize(order.client_order_id, quantity, now_ms())
        except VenueRejected as exc:
            log.warning("venue %s: exit %s not resized: %s", self.venue_name, order.client_order_id,
                        exc.reason)
            return
        self._resized(order, quantity)

    def _commit(self, orders: list[Order], reported: list[tuple[Order, dict[str, Any] | None]] = ()) -> None:
        """Orders, the venue's state and the events of `reported` changes: one batch."""
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
        if self.venue is not None:
            writes += self.venue.drain_writes()
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

    # --- brackets ---------------------------------------------------------------------

    def _flat(self, exit_order: Order) -> bool:
        """After a fill of `exit_order`: is the position it protects closed?"""
        return self.venue is not None and not self.venue.position(exit_order.symbol)

    def _cancel_exits(self, signal_id: str | None, symbol: str) -> None:
        """Cancel the live exits of `signal_id` (None: of every signal on `symbol`)."""
        assert self.venue is not None
        for order in [o for o in self.journal.live.values() if o.leg != "entry" and o.symbol == symbol
                      and signal_id in (None, o.signal_id) and o.status not in ("", "SUBMITTED")]:
            if order.client_order_id in self.venue.open:
                self._after_changes(self._apply(self.venue.cancel(order.client_order_id, now_ms())))


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
