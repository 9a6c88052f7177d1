"""The paper venue: an exchange simulated inside its adapter.

It keeps its own account — positions (net quantity, average entry), balance
(realised PnL minus fees), open orders — so the engine can reconcile against
it as against a real exchange. It behaves like one:

- market orders fill at the quote (the last market data, else the configured
  reference price) with `slippage_bps` against the taker, after `latency_ms`;
- limit orders that cross fill at once as taker (at the quote, never worse
  than the limit); the rest rests and fills as maker at its limit price when
  a later quote crosses it;
- `liquidity` caps the quantity one order fills per event (0 = unlimited),
  which is how partial fills happen;
- post-only (`PO`) that would cross is rejected; `IOC` fills what it can now
  and expires the rest; `FOK` fills everything now or expires unfilled;
- reduce-only is rejected when it would not reduce the position, and is
  clipped to the position when it is larger;
- stop orders (bracket stop-losses) rest until the last price reaches the
  trigger, then fill as market orders;
- a repeated client order id is refused with the order that has it
  (`DuplicateClientOrderId`), like Bybit 110072 / Binance -4116.

State changes are collected as store writes (`drain_writes()`), so the
adapter commits them atomically with its own journal. Pure otherwise: the
clock comes in as `now_ms`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import orjson

from titan_actors.domain.ids import trade_id
from titan_actors.domain.money import ZERO, json_default, loads_exact, to_decimal, to_decimal_or_none
from titan_actors.domain.orders import FINAL_STATUSES, Fill, stop_triggered
from titan_actors.venues.errors import DuplicateClientOrderId, VenueRejected

__all__ = ["PaperSettings", "PaperVenue", "VenueEvent", "VenueOrder"]

_BPS = Decimal(10_000)
ORDER_KEY = b"paper:o:"
OPEN_KEY = b"paper:open:"
ACCOUNT_KEY = b"paper:account"


@dataclass(frozen=True, slots=True)
class PaperSettings:
    reference_prices: dict[str, Decimal]
    latency_ms: int = 0
    slippage_bps: Decimal = ZERO
    taker_fee_bps: Decimal = Decimal("5.5")
    maker_fee_bps: Decimal = Decimal(2)
    liquidity: Decimal = ZERO
    balance: Decimal = Decimal(100_000)


@dataclass(frozen=True, slots=True)
class VenueOrder:
    client_order_id: str
    order_id: str
    symbol: str
    side: str
    quantity: Decimal
    order_type: str  # market | limit | stop
    price: Decimal | None
    trigger_price: Decimal | None
    time_in_force: str
    reduce_only: bool
    status: str
    filled_qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    fills: int = 0
    created_ts: int = 0
    due_ts: int = 0
    reason: str = ""

    @property
    def remaining(self) -> Decimal:
        return max(self.quantity - self.filled_qty, ZERO)

    @staticmethod
    def from_json(data: bytes) -> VenueOrder:
        raw = loads_exact(data)
        for name in ("quantity", "filled_qty", "avg_price"):
            raw[name] = to_decimal(raw[name], field=name)
        for name in ("price", "trigger_price"):
            raw[name] = to_decimal_or_none(raw.get(name), field=name)
        return VenueOrder(**raw)


@dataclass(frozen=True, slots=True)
class VenueEvent:
    """One order change at the venue, with the fill that caused it if any."""

    order: VenueOrder
    fill: Fill | None = None


class PaperVenue:
    def __init__(self, settings: PaperSettings, *, load_order: Callable[[str], VenueOrder | None]
                 = lambda _coid: None) -> None:
        self.settings = settings
        self.quotes: dict[str, tuple[Decimal, Decimal, Decimal]] = {
            s: (p, p, p) for s, p in settings.reference_prices.items()
        }
        self.open: dict[str, VenueOrder] = {}
        self.recent: dict[str, VenueOrder] = {}
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}
        self.balance = settings.balance
        self.seq = 0
        self._load_order = load_order
        self._writes: dict[bytes, bytes | None] = {}

    # --- persistence ------------------------------------------------------------

    def restore(self, account: bytes | None, open_orders: Iterable[bytes]) -> None:
        if account:
            raw = loads_exact(account)
            self.positions = {s: (to_decimal(q), to_decimal(a)) for s, (q, a) in raw["positions"].items()}
            self.balance, self.seq = to_decimal(raw["balance"]), raw["seq"]
        for data in open_orders:
            order = VenueOrder.from_json(data)
            self.open[order.client_order_id] = order

    def drain_writes(self) -> list[tuple[bytes, bytes | None]]:
        """Store writes since the last call (`None` value: delete the key)."""
        writes, self._writes = list(self._writes.items()), {}
        return writes

    def _save(self, order: VenueOrder) -> None:
        coid = order.client_order_id.encode()
        self._writes[ORDER_KEY + coid] = orjson.dumps(order, default=json_default)
        if order.status in FINAL_STATUSES:
            self.open.pop(order.client_order_id, None)
            self.recent[order.client_order_id] = order
            if len(self.recent) > 10_000:
                self.recent.pop(next(iter(self.recent)))
            self._writes[OPEN_KEY + coid] = None
        else:
            self.open[order.client_order_id] = order
            self._writes[OPEN_KEY + coid] = orjson.dumps(order, default=json_default)

    def _save_account(self) -> None:
        self._writes[ACCOUNT_KEY] = orjson.dumps(
            {"positions": self.positions, "balance": self.balance, "seq": self.seq}, default=json_default)

    # --- queries ------------------------------------------------------------------

    def find(self, client_order_id: str) -> VenueOrder | None:
        """Look an order up by client order id (open, recent, or in the store)."""
        return (self.open.get(client_order_id) or self.recent.get(client_order_id)
                or self._load_order(client_order_id))

    def position(self, symbol: str) -> Decimal:
        return self.positions.get(symbol, (ZERO, ZERO))[0]

    def quote(self, symbol: str) -> tuple[Decimal, Decimal, Decimal] | None:
        return self.quotes.get(symbol)

    # --- commands -----------------------------------------------------------------

    def submit(self, spec: dict[str, Any], now_ms: int) -> list[VenueEvent]:
        """Place an order: `spec` has client_order_id, symbol, side, quantity,
        order_type, price, trigger_price, time_in_force, reduce_only."""
        existing = self.find(spec["client_order_id"])
        if existing is not None:
            raise DuplicateClientOrderId(f"client order id {existing.client_order_id} is already used",
                                         existing)
        symbol = spec["symbol"]
        if symbol not in self.quotes:
            raise VenueRejected(f"no price for {symbol}: no market data and no reference price")
        quantity = spec["quantity"]
        if spec["reduce_only"]:
            quantity = self._reduce_only_qty(symbol, spec["side"], quantity)
        self.seq += 1
        order = VenueOrder(
            client_order_id=spec["client_order_id"], order_id=f"P{self.seq}", symbol=symbol,
            side=spec["side"], quantity=quantity, order_type=spec["order_type"], price=spec.get("price"),
            trigger_price=spec.get("trigger_price"), time_in_force=spec["time_in_force"],
            reduce_only=spec["reduce_only"], status="ACCEPTED", created_ts=now_ms,
        )
        if order.order_type == "limit" and order.time_in_force == "PO" and self._crosses(order):
            raise VenueRejected("post-only order would take liquidity")
        if order.order_type == "market" and self.settings.latency_ms > 0:
            order = replace(order, due_ts=now_ms + self.settings.latency_ms)
        self._save(order)
        self._save_account()
        if order.due_ts:
            return [VenueEvent(order)]  # executes in run_due() once the latency has passed
        return [VenueEvent(order), *self._execute_new(order, now_ms)]

    def _reduce_only_qty(self, symbol: str, side: str, quantity: Decimal) -> Decimal:
        position = self.position(symbol)
        reduces = (side == "buy" and position < 0) or (side == "sell" and position > 0)
        if not reduces:
            raise VenueRejected("reduce-only order would not reduce a position")
        return min(quantity, abs(position))

    def _execute_new(self, order: VenueOrder, now_ms: int) -> list[VenueEvent]:
        if order.order_type == "market":
            return self._take(order, now_ms, expire_rest=True)
        if order.order_type == "stop":
            return []
        crosses = self._crosses(order)
        tif = order.time_in_force
        if tif == "FOK":
            available = self.settings.liquidity or order.quantity
            if not crosses or available < order.quantity:
                return [self._close(order, "EXPIRED", now_ms, "FOK order could not fill in full")]
            return self._take(order, now_ms, expire_rest=True)
        if tif == "IOC":
            if not crosses:
                return [self._close(order, "EXPIRED", now_ms, "IOC order found nothing to fill")]
            return self._take(order, now_ms, expire_rest=True)
        return self._take(order, now_ms, expire_rest=False) if crosses else []

    def cancel(self, client_order_id: str, now_ms: int) -> list[VenueEvent]:
        order = self.open.get(client_order_id)
        if order is None:
            found = self.find(client_order_id)
            raise VenueRejected("order is already closed" if found else "unknown order")
        return [self._close(order, "CANCELED", now_ms, "canceled")]

    def resize(self, client_order_id: str, quantity: Decimal, now_ms: int) -> list[VenueEvent]:
        """A resting order's quantity changed in place (an amend), never below what filled."""
        order = self.open.get(client_order_id)
        if order is None:
            raise VenueRejected("order is not open")
        if quantity < order.filled_qty:
            raise VenueRejected(f"quantity {quantity} is below the filled {order.filled_qty}")
        order = replace(order, quantity=quantity)
        self._save(order)
        return [VenueEvent(order)]

    def on_quote(self, symbol: str, bid: Decimal, ask: Decimal, last: Decimal,
                 now_ms: int) -> list[VenueEvent]:
        """New market data: resting orders that it crosses fill, stops trigger."""
        self.quotes[symbol] = (bid, ask, last)
        events: list[VenueEvent] = []
        for order in [o for o in self.open.values() if o.symbol == symbol and not o.due_ts]:
            if order.order_type == "stop":
                if stop_triggered(order, last):
                    events += self._take(replace(order, order_type="market"), now_ms, expire_rest=True)
            elif order.order_type == "limit" and self._crosses(order):
                events += self._make(order, now_ms)
        return events

    def run_due(self, now_ms: int) -> list[VenueEvent]:
        """Market orders whose latency has passed execute now."""
        events: list[VenueEvent] = []
        for order in [o for o in self.open.values() if o.due_ts and o.due_ts <= now_ms]:
            events += self._take(replace(order, due_ts=0), now_ms, expire_rest=True)
        return events

    def next_due(self) -> int:
        return min((o.due_ts for o in self.open.values() if o.due_ts), default=0)

    # --- matching -------------------------------------------------------------------

    def _crosses(self, order: VenueOrder) -> bool:
        bid, ask, _last = self.quotes[order.symbol]
        return (order.side == "buy" and ask <= order.price) or (order.side == "sell" and bid >= order.price)

    def _take(self, order: VenueOrder, now_ms: int, *, expire_rest: bool) -> list[VenueEvent]:
        bid, ask, _last = self.quotes[order.symbol]
        slip = self.settings.slippage_bps / _BPS
        price = ask * (1 + slip) if order.side == "buy" else bid * (1 - slip)
        if order.order_type == "limit":
            price = min(price, order.price) if order.side == "buy" else max(price, order.price)
        events = self._fill(order, price, "taker", now_ms)
        order = events[-1].order if events else order
        if expire_rest and order.status not in FINAL_STATUSES:
            events.append(self._close(order, "EXPIRED", now_ms, "rest of an immediate order expired"))
        return events

    def _make(self, order: VenueOrder, now_ms: int) -> list[VenueEvent]:
        return self._fill(order, order.price, "maker", now_ms)

    def _fill(self, order: VenueOrder, price: Decimal, liquidity: str, now_ms: int) -> list[VenueEvent]:
        qty = order.remaining
        if self.settings.liquidity > 0:
            qty = min(qty, self.settings.liquidity)
        if order.reduce_only:
            position = abs(self.position(order.symbol))
            if not position:
                return [self._close(order, "CANCELED", now_ms, "reduce-only order: no position left")]
            qty = min(qty, position)
        if qty <= 0:
            return []
        bps = self.settings.taker_fee_bps if liquidity == "taker" else self.settings.maker_fee_bps
        fee = qty * price * bps / _BPS
        n = order.fills + 1
        fill = Fill(trade_id(order.order_id, n), qty, price, fee, liquidity, now_ms)
        filled = order.filled_qty + qty
        avg = (order.avg_price * order.filled_qty + price * qty) / filled
        status = "FILLED" if filled >= order.quantity else "PARTIALLY_FILLED"
        order = replace(order, filled_qty=filled, avg_price=avg, fills=n, status=status)
        self._book(order.symbol, order.side, qty, price, fee)
        self._save(order)
        self._save_account()
        return [VenueEvent(order, fill)]

    def _book(self, symbol: str, side: str, qty: Decimal, price: Decimal, fee: Decimal) -> None:
        position, avg = self.positions.get(symbol, (ZERO, ZERO))
        signed = qty if side == "buy" else -qty
        realised = ZERO
        if not position or (position > 0) == (signed > 0):
            total = abs(position) + qty
            avg = (abs(position) * avg + qty * price) / total
            position += signed
        else:
            closing = min(abs(position), qty)
            realised = closing * (price - avg) * (1 if position > 0 else -1)
            position += signed
            if not position:
                position, avg = ZERO, ZERO
            elif qty > closing:
                avg = price  # the position flipped: the rest opened at this price
        self.positions[symbol] = (position, avg)
        self.balance += realised - fee

    def _close(self, order: VenueOrder, status: str, now_ms: int, reason: str) -> VenueEvent:
        order = replace(order, status=status, reason=reason, due_ts=0)
        self._save(order)
        return VenueEvent(order)
