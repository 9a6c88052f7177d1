"""The risk guard actor: no order reaches a venue without its approval.

PREPARE comes as `CheckOrder` from the gateway. The guard checks, in order:
its view is rebuilt (else `INTERNAL`: fail closed), the trading state of the
order's scopes (`HALTED`; REDUCING admits only orders that reduce the
position), then every rule of `domain/risk_rules.py` against the policy and
the exposure view. An approved order is reserved (persisted) and goes on to
its venue adapter as `StageOrder`; a refused one goes back as
`CommandRefused` naming the rule, and is an `OrderDenied` event.

The exposure view: per symbol, the latest versioned `PositionSnapshot` from
its position actor (filled positions and open orders), plus reservations for
approved orders that no snapshot counts yet (released when one does, or when
the adapter says the order will never be sent: aborted, expired, or never
staged — it is asked once the order's `ttl_ms` has passed). So two PREPAREs can
never together pass a limit each passes alone.

Automatic states: realised losses of the UTC day beyond `daily_loss_limit`
set the global state to REDUCING; `venue_error_limit` consecutive venue
errors halt that venue (circuit breaker). Operators set states with
`SetTradingState`: written with its `titan.evt.risk.state.v1` event in one
batch before it is acknowledged; it survives restarts, and only a resume
lifts it.

Dead man's switches (`Heartbeat`, from a FastPath `HEARTBEAT` or the NATS
heartbeat subject): each armed scope is kept with its deadline in the store;
one whose deadline passes fires — the scope goes REDUCING (unless it is
halted), a `DeadMansSwitchFired` event says so, and every venue adapter
cancels the scope's resting orders. The armed timeouts travel with the
trading states, so each exchange adapter keeps the exchange's own
cancel-all-after armed too.

After a (re)start the guard asks every position actor for its snapshot and
approves nothing until all answered or 2 s passed; reservations come back
from its store.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson

from titan_actors.domain.dead_man import MAX_TIMEOUT_MS, MIN_TIMEOUT_MS, Switch, due, heartbeat
from titan_actors.domain.money import ZERO, json_default, loads_exact, to_decimal
from titan_actors.domain.risk_rules import (
    Exposure,
    OrderView,
    Policy,
    PolicyError,
    check_order,
    policy_from_config,
    reduces_position,
    size_by_risk,
    slippage_cap,
)
from titan_actors.domain.routing import Book, RouteRefusal, route, split
from titan_actors.domain.signals import AUTO
from titan_actors.domain.throttle import TokenBucket
from titan_actors.domain.trading_state import STATES, effective_state, valid_scope
from titan_actors.messages import (
    CancelOpenOrders,
    CheckOrder,
    CommandRefused,
    EvaluateOrder,
    Evaluation,
    Heartbeat,
    HeartbeatArmed,
    OpenOrdersCanceled,
    OrderDropped,
    PolicyReplaced,
    PositionSnapshot,
    PriceUpdate,
    PriceUpdates,
    ReplacePolicy,
    ReservationCheck,
    SetTradingState,
    SnapshotRequest,
    StageOrder,
    StatesApplied,
    TradingStates,
    TradingStateSet,
    VenueHealth,
)
from titan_actors.runtime import otel
from titan_actors.runtime.actor import TitanActor, count_boot
from titan_actors.runtime.clock import now_ms
from titan_actors.runtime.trace import trace
from titan_actors.wire import subjects

__all__ = ["RiskGuard"]

log = logging.getLogger(__name__)

_STATE = b"state:"
_SWITCH = b"dms:"
_DMS = "risk:dms"
_DMS_S = 0.05
_DMS_OPERATOR = "dead-man's-switch"
_RESERVED = b"resv:"
_POLICY = b"policy"
_REBUILD_S = 2.0
_TICK = "risk:tick"
_TICK_S = 0.5
_RESERVATION_GRACE_MS = 5_000
_APPLY = "risk:apply"
_APPLY_TIMEOUT_S = 2.0  # under the CLI's and the NATS bridge's 5 s: the operator hears why


_MAX_STRATEGY_BUCKETS = 10_000


def _reservation(data: bytes) -> dict[str, Any]:
    raw = loads_exact(data)
    raw["qty"] = to_decimal(raw["qty"], field="qty")
    return raw



class RiskGuard(TitanActor):
    needs = ("nats", "positions", "position:", "venue:", "gateway")

    def on_start(self) -> None:
        # Halts are synced before they are acknowledged (`_set_state`); the
        # rest (reservations, snapshots) is rebuilt from the positions.
        self.store = self.open_store("risk", durable=False)
        self.boots = count_boot(self.store)
        self.states = {k[len(_STATE):].decode(): v.decode() for k, v in self.store.items(_STATE)}
        self.switches: dict[str, Switch] = {
            k[len(_SWITCH):].decode(): Switch(k[len(_SWITCH):].decode(), **orjson.loads(v))
            for k, v in self.store.items(_SWITCH)}
        self.after(_DMS_S, _DMS)
        self.open_outbox(self.store)
        self.policy, self.policy_raw = self._load_policy()
        sizing = self.config.get("sizing", {})
        self.sizing_equity = to_decimal(sizing.get("equity", 0), field="sizing.equity") or self.policy.equity
        self.references: dict[str, dict[str, Decimal]] = {
            venue: {symbol: to_decimal(price, field=f"reference_prices.{symbol}")
                    for symbol, price in refs.items()}
            for venue, refs in self.config.get("references", {}).items()}
        self.reserved: dict[str, dict[str, Any]] = {
            k[len(_RESERVED):].decode(): _reservation(v) for k, v in self.store.items(_RESERVED)}
        self.snapshots: dict[str, PositionSnapshot] = {}
        self.prices: dict[str, PriceUpdate] = {}
        self.books: dict[str, dict[str, Book]] = {}  # symbol → venue → its newest L2 book (smart routing)
        routing = self.config.get("routing", {})
        self.route_fees = {v: to_decimal(f, field="fees_bps") for v, f in self.config.get("fees", {}).items()}
        self.max_book_age_ms = int(routing.get("max_book_age_ms", 2000))
        self.route_slippage_bps = to_decimal(routing.get("max_slippage_bps", 50), field="max_slippage_bps")
        self.venue_buckets: dict[str, TokenBucket] = {}
        self.strategy_buckets: dict[str, TokenBucket] = {}
        self.counts = {"checked": 0, "approved": 0, "refused": 0}
        self.refusals: Counter[str] = Counter()  # by the rule (or, without one, the code) that refused
        self.loss_tripped_day = (self.store.get(b"loss_tripped_day") or b"").decode()
        self.rebuild_until = time.monotonic() + _REBUILD_S
        self.awaiting: set[str] = set()
        self.venues: dict[str, list[str]] = self.config.get("venues", {})
        self._gateway_told_ready = 0  # the gateway incarnation that heard `ready`
        # Versions grow across restarts of this actor (CLOCK_MONOTONIC is
        # system-wide), so an answer to an earlier incarnation never matches.
        self.states_version = time.monotonic_ns()
        self.applied: dict[str, int] = {}  # role -> latest version it applied
        self.acks: list[tuple[int, float, Any, TradingStateSet]] = []  # waiting for `StatesApplied`
        self.after(_TICK_S, _TICK)

    def _load_policy(self) -> tuple[Policy, dict[str, Any]]:
        """The config's policy, or the one an operator put in place during this
        engine run (`titan risk reload`), which survives a restart of this actor."""
        raw = self.config.get("policy", {})
        stored = self.store.get(_POLICY)
        if stored is not None:
            saved = orjson.loads(stored)
            if saved.get("engine_id") == (self.engine.engine_id if self.engine else None):
                raw = saved["raw"]
        return policy_from_config(raw), raw

    # --- the view ---------------------------------------------------------------------

    def on_directory(self) -> None:
        # The gateway (CONFIRM) and the adapters (orders resolved after their
        # restart) must know the states: tell every new one.
        told = getattr(self, "_told", {})
        for peer in self.directory.peers:
            # By incarnation: an actor restarted in its shared worker keeps its pid.
            wants = peer.role == "gateway" or peer.role.startswith("venue:")
            if wants and told.get(peer.role) != peer.cell:
                told[peer.role] = peer.cell
                self.tell(peer.role, self._states_message())
        self._told = told
        if self.rebuilding:
            for peer in self.directory.peers:
                if peer.role.startswith("position:") and peer.role not in self.awaiting:
                    symbol = peer.role.split(":", 1)[1]
                    if symbol not in self.snapshots:
                        self.awaiting.add(peer.role)
                        self.tell(peer.role, SnapshotRequest())

    @property
    def ready(self) -> bool:
        """The engine can take an order: the view is rebuilt and every position
        is reconciled with its venue (or the venue is known to be unavailable)."""
        if self.rebuilding:
            return False
        for venue, symbols in self.venues.items():
            for symbol in symbols:
                snap = self.snapshots.get(symbol)
                if snap is None or not (snap.reconciled.get(venue) or venue in snap.unavailable):
                    return False
        return True

    def end_of_batch(self) -> None:
        gateway = self.directory.get("gateway")
        if gateway is not None and gateway.cell != self._gateway_told_ready and self.ready:
            self._gateway_told_ready = gateway.cell
            self.tell("gateway", self._states_message())

    @property
    def rebuilding(self) -> bool:
        if self.rebuild_until == 0.0:
            return False
        if time.monotonic() >= self.rebuild_until or (self.awaiting and all(
                r.split(":", 1)[1] in self.snapshots for r in self.awaiting)):
            self.rebuild_until = 0.0
            return False
        return True

    def _on_snapshot(self, snap: PositionSnapshot) -> None:
        current = self.snapshots.get(snap.symbol)
        if current is not None and snap.version < current.version:
            return
        self.snapshots[snap.symbol] = snap
        accounted = set(snap.accounted)
        self._release([c for c, r in self.reserved.items() if r["symbol"] == snap.symbol and c in accounted])
        self._check_daily_loss()

    def _release(self, coids: list[str]) -> None:
        deletes = [_RESERVED + c.encode() for c in coids if self.reserved.pop(c, None) is not None]
        if deletes:
            self.store.write_batch((), deletes)

    def _pending(self, symbol: str) -> tuple[Decimal, Decimal, Decimal, int]:
        """Filled net quantity, pending buys, pending sells and open orders of a
        symbol: its snapshot plus the reservations no snapshot counts yet."""
        snap = self.snapshots.get(symbol)
        venues = list(snap.venues.values()) if snap else []
        qty = sum((v["qty"] for v in venues), ZERO)
        buys = sum((v["open_buy"] for v in venues), ZERO)
        sells = sum((v["open_sell"] for v in venues), ZERO)
        count = sum(v["open_orders"] for v in venues)
        for r in self.reserved.values():
            if r["symbol"] == symbol:
                buys += r["qty"] if r["side"] == "buy" else ZERO
                sells += r["qty"] if r["side"] == "sell" else ZERO
                count += 1
        return qty, buys, sells, count

    def exposure(self, symbol: str) -> Exposure:
        qty, buys, sells, count = self._pending(symbol)
        others = ({s for s in self.snapshots} | {r["symbol"] for r in self.reserved.values()}) - {symbol}
        gross_other, total = ZERO, count
        for other in others:
            o_qty, o_buys, o_sells, o_count = self._pending(other)
            price = self._price(other)
            gross_other += max(abs(o_qty + o_buys), abs(o_qty - o_sells)) * price if price else ZERO
            total += o_count
        return Exposure(position_qty=qty, open_buy_qty=buys, open_sell_qty=sells, open_orders=count,
                        gross_notional_other=gross_other, open_orders_total=total,
                        realised_today=self._realised_today())

    def _price(self, symbol: str, venue: str | None = None) -> Decimal | None:
        quote = self.prices.get(symbol)
        if quote is not None and not self._stale(quote):
            return quote.last
        return self._reference(symbol, venue)

    def _stale(self, quote: PriceUpdate) -> bool:
        limit = self.policy.max_price_age_ms
        return bool(limit) and now_ms() - quote.ts > limit

    def _reference(self, symbol: str, venue: str | None) -> Decimal | None:
        if venue is not None:
            return self.references.get(venue, {}).get(symbol)
        return next((refs[symbol] for refs in self.references.values() if symbol in refs), None)

    def _realised_today(self) -> Decimal:
        today = time.strftime("%Y-%m-%d", time.gmtime())
        return sum((s.realised_today for s in self.snapshots.values() if s.day == today), ZERO)

    # --- messages -----------------------------------------------------------------------

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, CheckOrder):
            self._check(msg)
        elif isinstance(msg, PositionSnapshot):
            self._on_snapshot(msg)
        elif isinstance(msg, OrderDropped):
            self._release([msg.client_order_id])
        elif isinstance(msg, PriceUpdates):
            for quote in msg.quotes:
                self.prices[quote.symbol] = quote
            for book in msg.books:
                self.books.setdefault(book.symbol, {})[book.venue] = book
        elif isinstance(msg, SetTradingState):
            self._set_state(msg, sender)
        elif isinstance(msg, StatesApplied):
            self.applied[msg.role] = max(msg.version, self.applied.get(msg.role, 0))
            self._send_acks(timed_out=False)
        elif isinstance(msg, VenueHealth):
            self._on_venue_health(msg)
        elif isinstance(msg, EvaluateOrder):
            self._evaluate(msg.intent, sender)
        elif isinstance(msg, ReplacePolicy):
            self._replace_policy(msg, sender)
        elif isinstance(msg, Heartbeat):
            self._heartbeat(msg, sender)
        elif isinstance(msg, OpenOrdersCanceled):
            log.warning("risk: dead man's switch: venue %s canceled %d orders, dropped %d", msg.venue,
                        len(msg.canceled), len(msg.dropped))
        else:
            super().handle(msg, sender)

    def on_wakeup(self, payload: Any) -> None:
        if payload == _DMS:
            self._fire_switches()
            self.after(_DMS_S, _DMS)
            return
        if payload == _APPLY:
            self._send_acks(timed_out=True)
            return
        if payload != _TICK:
            return
        # A reservation outlives its ttl only if its order may still reach the
        # venue: ask the adapter, which drops the ones it never sent (fail closed:
        # a confirmed order stays counted until a snapshot counts it).
        now = now_ms()
        stale: dict[str, list[str]] = {}
        for coid, r in self.reserved.items():
            if now > r["expires_at"] + _RESERVATION_GRACE_MS:
                stale.setdefault(r["venue"], []).append(coid)
        for venue, coids in stale.items():
            self.tell(f"venue:{venue}", ReservationCheck(tuple(coids)))
        self.after(_TICK_S, _TICK)

    # --- pre-trade ------------------------------------------------------------------------

    def _view(self, intent: Any) -> OrderView:
        return OrderView(venue=intent.exchange, symbol=intent.symbol, side=intent.side, qty=intent.quantity,
                         order_type=intent.order_type, price=intent.price, reduce_only=intent.reduce_only,
                         strategy_id=intent.strategy_id)

    def _verdicts(self, order: OrderView, exposure: Exposure) -> list[Any]:
        now = time.monotonic()
        venue_rate = strategy_rate = None
        if self.policy.orders_per_second_per_venue:
            bucket = self.venue_buckets.setdefault(
                order.venue, TokenBucket(self.policy.orders_per_second_per_venue, now))
            venue_rate = bucket.available(now)
        if self.policy.orders_per_second_per_strategy and order.strategy_id:
            bucket = self.strategy_buckets.get(order.strategy_id)
            if bucket is None:
                self._bound_buckets(now)
                bucket = self.strategy_buckets[order.strategy_id] = TokenBucket(
                    self.policy.orders_per_second_per_strategy, now)
            strategy_rate = bucket.available(now)
        quote = self.prices.get(order.symbol)
        return check_order(order, self.policy, exposure, market=quote.last if quote else None,
                           market_age_ms=now_ms() - quote.ts if quote else None,
                           reference=self._reference(order.symbol, order.venue), venue_rate=venue_rate,
                           strategy_rate=strategy_rate)

    def _bound_buckets(self, now: float) -> None:
        """At most `_MAX_STRATEGY_BUCKETS` throttles: a full bucket (its strategy
        idle for a second or more) is the same as a new one, so those go first,
        then the oldest."""
        if len(self.strategy_buckets) < _MAX_STRATEGY_BUCKETS:
            return
        for key in [k for k, b in self.strategy_buckets.items() if b.available(now) >= b.burst]:
            del self.strategy_buckets[key]
        while len(self.strategy_buckets) >= _MAX_STRATEGY_BUCKETS:
            del self.strategy_buckets[next(iter(self.strategy_buckets))]

    def _state_refusal(self, order: OrderView, exposure: Exposure) -> str | None:
        state, scope = effective_state(self.states, venue=order.venue, symbol=order.symbol)
        if state == "HALTED":
            return f"trading is halted ({scope})"
        if state == "REDUCING" and not (order.reduce_only or reduces_position(order, exposure)):
            return f"trading is REDUCING ({scope}): only orders that reduce the position"
        return None

    def _check(self, msg: CheckOrder) -> None:
        span = otel.start("risk check", msg.trace, titan__signal_id=msg.intent.signal_id)
        try:
            self._decide(msg, span)
        finally:
            otel.end(span)

    def _decide(self, msg: CheckOrder, span: Any) -> None:
        intent = msg.intent
        self.counts["checked"] += 1

        def refuse(code: str, reason: str, rule: str = "") -> None:
            if span is not None:
                span.set_attributes({"titan.risk.verdict": code, "titan.risk.rule": rule or code})
            self.counts["refused"] += 1
            self.refusals[rule or code] += 1
            self.tell(msg.reply_to, CommandRefused(intent.signal_id, "PREPARE", code, reason, rule))
            if code != "BUSY":
                self._denied(intent, code, reason, rule)

        # Not ready yet: nothing was done, and a resend soon will be answered (BUSY, not INTERNAL).
        if self.rebuilding:
            refuse("BUSY", "the risk guard is rebuilding its view after a restart; resend")
            return
        if intent.exchange == AUTO:
            chosen = self._route(intent)
            if isinstance(chosen, RouteRefusal):
                refuse("RISK_REJECTED", chosen.reason, chosen.rule)
                return
            intent = chosen
        intent = self._arrived(intent)
        if intent.max_slippage_bps is not None:
            capped = slippage_cap(side=intent.side, order_type=intent.order_type, price=intent.price,
                                  time_in_force=intent.time_in_force, arrival=intent.arrival_price,
                                  max_bps=intent.max_slippage_bps)
            if isinstance(capped, str):
                refuse("INVALID", capped)
                return
            intent = replace(intent, order_type=capped[0], price=capped[1], time_in_force=capped[2])
        if intent.risk_pct is not None:
            entry = sum(intent.ladder) / len(intent.ladder) if intent.ladder else intent.price
            sized = size_by_risk(equity=self.sizing_equity, risk_pct=intent.risk_pct,
                                 entry=entry or intent.arrival_price, stop_loss=intent.stop_loss)
            if isinstance(sized, str):
                refuse("INVALID", sized)
                return
            intent = replace(intent, quantity=sized, risk_pct=None)
        order = self._view(intent)
        snap = self.snapshots.get(order.symbol)
        if snap is not None and order.venue in snap.unavailable:
            refuse("VENUE_UNAVAILABLE", f"venue {order.venue} is not available")
            return
        if snap is None or not snap.reconciled.get(order.venue, False):
            refuse("BUSY", f"{order.symbol} is not reconciled with venue {order.venue} yet; resend")
            return
        exposure = self.exposure(order.symbol)
        halted = self._state_refusal(order, exposure)
        if halted is not None:
            refuse("HALTED", halted)
            return
        if span is not None:  # every rule's verdict, for the trace
            verdicts = list(self._verdicts(order, exposure))
            marks = [f"{v.rule}:{'pass' if v.ok else 'fail'}" for v in verdicts]
            span.set_attribute("titan.risk.rules", marks)
            failed = next((v for v in verdicts if not v.ok), None)
        else:
            failed = next((v for v in self._verdicts(order, exposure) if not v.ok), None)
        if failed is not None:
            refuse("RISK_REJECTED", failed.reason, failed.rule)
            return
        if span is not None:
            span.set_attribute("titan.risk.verdict", "approved")
        self._approve(intent, msg.reply_to)

    def _route(self, intent: Any) -> Any:
        """Smart routing: `intent` for the venue (trading the symbol) whose book
        executes it best — or, with `split`, over several, as a SPLIT parent
        on the venue of its largest leg, each leg a limit IOC child — or why not."""
        books = {v: b for v, b in self.books.get(intent.symbol, {}).items()
                 if intent.symbol in self.venues.get(v, ())}
        cap = intent.max_slippage_bps if intent.max_slippage_bps is not None else self.route_slippage_bps
        if intent.split:
            legs = split(intent.side, intent.quantity, books, self.route_fees, now_ms=now_ms(),
                         max_age_ms=self.max_book_age_ms, max_slippage_bps=cap)
            if isinstance(legs, RouteRefusal):
                return legs
            if len(legs) > 1:
                main = max(legs, key=lambda leg: leg.quantity)
                spec = {"type": "SPLIT", "legs": [[leg.venue, leg.quantity, leg.limit] for leg in legs]}
                return replace(intent, exchange=main.venue, algo=spec)
            return replace(intent, exchange=legs[0].venue)
        chosen = route(intent.side, intent.quantity, books, self.route_fees, now_ms=now_ms(),
                       max_age_ms=self.max_book_age_ms, max_slippage_bps=cap)
        return chosen if isinstance(chosen, RouteRefusal) else replace(intent, exchange=chosen.venue)

    def _arrived(self, intent: Any) -> Any:
        """`intent` with the market price at its arrival: the mid of a fresh
        quote, else the last known or reference price (None without any)."""
        quote = self.prices.get(intent.symbol)
        if quote is not None and not self._stale(quote) and quote.bid > 0 and quote.ask > 0:
            arrival = (quote.bid + quote.ask) / 2
        else:
            arrival = self._price(intent.symbol, intent.exchange)
        return replace(intent, arrival_price=arrival)

    def _approve(self, intent: Any, reply_to: str) -> None:
        from titan_actors.domain.ids import client_order_id

        now = time.monotonic()
        if intent.exchange in self.venue_buckets:
            self.venue_buckets[intent.exchange].take(now)
        if intent.strategy_id in self.strategy_buckets:
            self.strategy_buckets[intent.strategy_id].take(now)
        coid = client_order_id(intent.signal_id)
        reservation = {"symbol": intent.symbol, "venue": intent.exchange, "side": intent.side,
                       "qty": intent.quantity, "expires_at": now_ms() + intent.ttl_ms}
        self.reserved[coid] = reservation
        self.store.put(_RESERVED + coid.encode(), orjson.dumps(reservation, default=json_default))
        self.counts["approved"] += 1
        if not self.tell(f"venue:{intent.exchange}", StageOrder(intent, reply_to)):
            self._release([coid])
            self.tell(reply_to, CommandRefused(intent.signal_id, "PREPARE", "VENUE_UNAVAILABLE",
                                               f"the adapter of venue {intent.exchange} is down"))

    def _denied(self, intent: Any, code: str, reason: str, rule: str) -> None:
        assert self.outbox is not None
        data = {"signal_id": intent.signal_id, "exchange": intent.exchange, "side": intent.side,
                "quantity": intent.quantity, "order_type": intent.order_type, "price": intent.price,
                "code": code, "rule": rule, "reason": reason, "strategy_id": intent.strategy_id}
        self.store.write_batch(self.outbox.emit(subjects.report(intent.symbol), "OrderDenied", intent.symbol,
                                                data))

    def _evaluate(self, intent: Any, asker: Any) -> None:
        order = self._view(intent)
        exposure = self.exposure(order.symbol)
        verdicts = [(v.rule, v.ok, v.reason) for v in self._verdicts(order, exposure)]
        halted = self._state_refusal(order, exposure)
        verdicts.insert(0, ("trading_state", halted is None, halted or ""))
        state, _scope = effective_state(self.states, venue=order.venue, symbol=order.symbol)
        self.tell(asker, Evaluation(tuple(verdicts), state, {
            "position_qty": exposure.position_qty, "open_buy_qty": exposure.open_buy_qty,
            "open_sell_qty": exposure.open_sell_qty, "open_orders": exposure.open_orders,
            "gross_notional_other": exposure.gross_notional_other,
            "open_orders_total": exposure.open_orders_total, "realised_today": exposure.realised_today,
        }), via="thespian")

    def _replace_policy(self, msg: ReplacePolicy, asker: Any) -> None:
        try:
            policy = policy_from_config(msg.raw)
        except PolicyError as exc:
            self.tell(asker, PolicyReplaced(False, str(exc)), via="thespian")
            return
        assert self.engine is not None
        self.store.put(_POLICY, orjson.dumps({"engine_id": self.engine.engine_id, "raw": msg.raw},
                                             default=json_default))
        self.policy, self.policy_raw = policy, msg.raw
        self.tell(asker, PolicyReplaced(True, policy=policy.as_dict()), via="thespian")

    # --- trading states -----------------------------------------------------------------

    def _set_state(self, msg: SetTradingState, sender: Any) -> None:
        """Set, persist (synced) and spread a state; acknowledge it once the
        gateway and every venue adapter applied it (`StatesApplied`), so a
        halt is in force wherever an order could still be sent when its
        reply leaves. Peers that do not answer in `_APPLY_TIMEOUT_S` are named
        in the reply's `unconfirmed` (a dead or restarting one sends nothing
        before it hears the states)."""
        if msg.mode not in STATES or not valid_scope(msg.scope):
            current = self.states.get(msg.scope, "ACTIVE")  # refused: callers validate first
            refused = TradingStateSet(msg.corr, msg.scope, current, dict(self.states))
            self.tell(sender, refused, via="thespian")
            return
        if self.states.get(msg.scope, "ACTIVE") != msg.mode:  # a repeat changes nothing, reports nothing
            self._change_state(msg.scope, msg.mode, msg.reason, msg.operator)
        else:
            self._spread_states()  # a repeat may follow a change its peers have not applied yet
        # A halt is acknowledged only once it would survive a power loss (halts
        # are rare: a sync of their own, not the batch's).
        self.sync_stores()
        self.crash_point("risk.before_ack")
        reply = TradingStateSet(msg.corr, msg.scope, msg.mode, dict(self.states))
        self.acks.append((self.states_version, time.monotonic() + _APPLY_TIMEOUT_S, sender, reply))
        self.after(_APPLY_TIMEOUT_S, _APPLY)
        self._send_acks(timed_out=False)

    def _appliers(self) -> list[str]:
        return [p.role for p in self.directory.peers if p.role == "gateway" or p.role.startswith("venue:")]

    def _send_acks(self, *, timed_out: bool) -> None:
        now = time.monotonic()
        waiting = []
        for version, deadline, sender, reply in self.acks:
            behind = tuple(r for r in self._appliers() if self.applied.get(r, 0) < version)
            if not behind or (timed_out and now >= deadline):
                trace("halt_ack", scope=reply.scope, mode=reply.trading_state)
                self.tell(sender, TradingStateSet(reply.corr, reply.scope, reply.trading_state, reply.states,
                                                  behind))
            else:
                waiting.append((version, deadline, sender, reply))
        self.acks = waiting

    def _states_message(self) -> TradingStates:
        return TradingStates(dict(self.states), self.ready, self.states_version,
                             {scope: s.timeout_ms for scope, s in self.switches.items()})

    # --- dead man's switches ------------------------------------------------------------

    def _heartbeat(self, msg: Heartbeat, sender: Any) -> None:
        """Arm, refresh or (timeout 0) disarm the scope's switch; persisted
        before it is acknowledged. A change of timeouts goes to the adapters."""
        if not valid_scope(msg.scope) or not (msg.timeout_ms == 0 or MIN_TIMEOUT_MS <= msg.timeout_ms
                                              <= MAX_TIMEOUT_MS):
            self.tell(sender, HeartbeatArmed(msg.corr, msg.scope, 0, 0, "scope or timeout_ms out of range"))
            return
        before = {scope: s.timeout_ms for scope, s in self.switches.items()}
        self.switches = heartbeat(self.switches, msg.scope, msg.timeout_ms, now_ms())
        key = _SWITCH + msg.scope.encode()
        switch = self.switches.get(msg.scope)
        if switch is None:
            self.store.write_batch((), [key])
        else:
            self.store.put(key, orjson.dumps({"timeout_ms": switch.timeout_ms, "deadline": switch.deadline}))
        if before != {scope: s.timeout_ms for scope, s in self.switches.items()}:
            self._spread_states()
        deadline = switch.deadline if switch is not None else 0
        self.tell(sender, HeartbeatArmed(msg.corr, msg.scope, msg.timeout_ms, deadline))

    def _fire_switches(self) -> None:
        fired = due(self.switches, now_ms())
        for switch in fired:
            del self.switches[switch.scope]
            reason = f"dead man's switch: no heartbeat for {switch.timeout_ms} ms"
            assert self.outbox is not None
            writes = self.outbox.emit(subjects.RISK_STATE, "DeadMansSwitchFired", None, {
                "scope": switch.scope, "timeout_ms": switch.timeout_ms, "deadline": switch.deadline,
                "trading_state": "REDUCING" if self.states.get(switch.scope, "ACTIVE") == "ACTIVE"
                else self.states[switch.scope]})
            log.warning("risk: %s (%s): REDUCING, canceling its resting orders", reason, switch.scope)
            if self.states.get(switch.scope, "ACTIVE") == "ACTIVE":
                # The state first: a crash before the switch is deleted fires it again, never not at all.
                self._change_state(switch.scope, "REDUCING", reason, _DMS_OPERATOR, extra=writes)
                self.store.write_batch((), [_SWITCH + switch.scope.encode()])
            else:
                self.store.write_batch(writes, [_SWITCH + switch.scope.encode()])
                self._spread_states()
            for role in self._appliers():
                if role.startswith("venue:"):
                    self.tell(role, CancelOpenOrders(switch.scope, reason, _DMS_OPERATOR))
        if fired:
            self.sync_stores()

    def _spread_states(self) -> None:
        self.states_version += 1
        for role in self._appliers():
            self.tell(role, self._states_message())

    def _change_state(self, scope: str, mode: str, reason: str, operator: str,
                      extra: list[tuple[bytes, bytes]] = ()) -> None:
        previous = self.states.get(scope, "ACTIVE")
        key = _STATE + scope.encode()
        if mode == "ACTIVE":
            self.states.pop(scope, None)
        else:
            self.states[scope] = mode
        assert self.outbox is not None
        event = self.outbox.emit(subjects.RISK_STATE, "TradingStateChanged", None, {
            "scope": scope, "trading_state": mode, "previous": previous, "reason": reason,
            "operator": operator, "states": dict(self.states),
        })
        puts = [*event, *extra] + ([(key, mode.encode())] if mode != "ACTIVE" else [])
        self.store.write_batch(puts, [key] if mode == "ACTIVE" else [])  # before it is acknowledged
        self._spread_states()

    def _check_daily_loss(self) -> None:
        limit = self.policy.daily_loss_limit
        today = time.strftime("%Y-%m-%d", time.gmtime())
        if not limit or self.loss_tripped_day == today or -self._realised_today() <= limit:
            return
        self.loss_tripped_day = today
        if self.states.get("global", "ACTIVE") == "ACTIVE":
            self._change_state("global", "REDUCING", f"daily realised loss beyond {limit:g}", "risk-guard",
                               [(b"loss_tripped_day", today.encode())])

    def _on_venue_health(self, msg: VenueHealth) -> None:
        limit = self.policy.venue_error_limit
        scope = f"venue:{msg.venue}"
        if limit and msg.consecutive_errors >= limit and self.states.get(scope) != "HALTED":
            self._change_state(scope, "HALTED", f"circuit breaker: {msg.consecutive_errors} consecutive "
                                                f"venue errors ({msg.last_error})", "risk-guard")

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, "trading_state": self.states.get("global", "ACTIVE"),
                "states": dict(self.states), "rebuilding": self.rebuilding, "reserved": len(self.reserved),
                "snapshots": {s: v.version for s, v in self.snapshots.items()},
                "realised_today": self._realised_today(), "strategy_buckets": len(self.strategy_buckets),
                "prices": {s: {"last": q.last, "age_ms": now_ms() - q.ts} for s, q in self.prices.items()},
                "refusals_by_rule": dict(self.refusals), "daily_loss_limit": self.policy.daily_loss_limit,
                **self.counts}
