"""Orders, pure: what a signal became, from PREPARE to its last fill.

An order has a `stage` before it reaches a venue (`PREPARED`, then
`CONFIRMED`, or `ABORTED` / `EXPIRED` instead) and a venue `status` after
(`SUBMITTED`, `ACCEPTED`, `PARTIALLY_FILLED`, `FILLED`, `CANCELED`,
`REJECTED`, `EXPIRED`). Every change returns a new `Order`; a fill is
applied once, by its trade id.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from titan_actors.domain.signals import OrderIntent

__all__ = [
    "FINAL_STATUSES",
    "Fill",
    "Order",
    "abort",
    "apply_fill",
    "confirm",
    "expire",
    "order_from_intent",
    "with_status",
]

FINAL_STATUSES = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED"})
_QTY_EPSILON = 1e-12


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: str
    qty: float
    price: float
    fee: float
    liquidity: str  # maker | taker
    ts: int


@dataclass(frozen=True, slots=True)
class Order:
    client_order_id: str
    signal_id: str
    symbol: str
    side: str
    quantity: float
    order_type: str  # market | limit | stop
    price: float | None
    time_in_force: str
    reduce_only: bool
    exchange: str
    stop_loss: float | None = None
    take_profits: tuple[float, ...] = ()
    strategy_id: str | None = None
    phase: int | None = None
    ttl_ms: int = 5000
    prepared_at: int = 0
    expires_at: int = 0
    leg: str = "entry"  # entry | sl | tp1, tp2, ...
    trigger_price: float | None = None
    stage: str = "PREPARED"
    status: str = ""
    order_id: str = ""
    filled_qty: float = 0.0
    avg_price: float = 0.0
    fees: float = 0.0
    fills: tuple[Fill, ...] = field(default=())
    reason: str = ""
    confirmed_at: int = 0
    updated_at: int = 0

    @property
    def final(self) -> bool:
        return self.stage in ("ABORTED", "EXPIRED") or self.status in FINAL_STATUSES

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled_qty, 0.0)

    def public(self) -> dict[str, Any]:
        """The normalised order of the PREPARED reply."""
        return {
            "client_order_id": self.client_order_id, "symbol": self.symbol, "side": self.side,
            "quantity": self.quantity, "order_type": self.order_type, "price": self.price,
            "time_in_force": self.time_in_force, "reduce_only": self.reduce_only,
            "exchange": self.exchange, "stop_loss": self.stop_loss,
            "take_profits": list(self.take_profits), "strategy_id": self.strategy_id,
            "phase": self.phase, "ttl_ms": self.ttl_ms,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # orjson reads dataclasses natively, ~20x faster than asdict

    @staticmethod
    def from_json(data: bytes) -> Order:
        raw = orjson.loads(data)
        raw["take_profits"] = tuple(raw["take_profits"])
        raw["fills"] = tuple(Fill(**f) for f in raw["fills"])
        return Order(**raw)


def order_from_intent(intent: OrderIntent, client_order_id: str, now_ms: int) -> Order:
    return Order(
        client_order_id=client_order_id, signal_id=intent.signal_id, symbol=intent.symbol,
        side=intent.side, quantity=intent.quantity, order_type=intent.order_type, price=intent.price,
        time_in_force=intent.time_in_force, reduce_only=intent.reduce_only, exchange=intent.exchange,
        stop_loss=intent.stop_loss, take_profits=intent.take_profits, strategy_id=intent.strategy_id,
        phase=intent.phase, ttl_ms=intent.ttl_ms, prepared_at=now_ms,
        expires_at=now_ms + intent.ttl_ms, updated_at=now_ms,
    )


def confirm(order: Order, now_ms: int) -> Order:
    return replace(order, stage="CONFIRMED", status="SUBMITTED", confirmed_at=now_ms, updated_at=now_ms)


def abort(order: Order, now_ms: int) -> Order:
    return replace(order, stage="ABORTED", updated_at=now_ms)


def expire(order: Order, now_ms: int) -> Order:
    return replace(order, stage="EXPIRED", updated_at=now_ms)


def with_status(order: Order, status: str, now_ms: int, *, order_id: str = "", reason: str = "") -> Order:
    return replace(order, status=status, order_id=order_id or order.order_id,
                   reason=reason or order.reason, updated_at=now_ms)


def apply_fill(order: Order, fill: Fill) -> Order:
    """The order with `fill` applied; unchanged when that trade id is known."""
    if any(f.trade_id == fill.trade_id for f in order.fills):
        return order
    filled = order.filled_qty + fill.qty
    avg = (order.avg_price * order.filled_qty + fill.price * fill.qty) / filled
    done = filled >= order.quantity - _QTY_EPSILON
    status = "FILLED" if done else "PARTIALLY_FILLED"
    if order.status in FINAL_STATUSES and order.status != "FILLED":
        status = order.status  # a fill that raced a cancel: it counts, the order stays closed
    return replace(order, filled_qty=filled, avg_price=avg, fees=order.fees + fill.fee,
                   fills=(*order.fills, fill), status=status, updated_at=fill.ts)
