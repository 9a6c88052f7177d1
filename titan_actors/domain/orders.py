"""Orders, pure: what a signal became, from PREPARE to its last fill.

An order has a `stage` before it reaches a venue (`PREPARED`, then
`CONFIRMED`, or `ABORTED` / `EXPIRED` instead) and a venue `status` after
(`SUBMITTED`, `ACCEPTED`, `PARTIALLY_FILLED`, `FILLED`, `CANCELED`,
`REJECTED`, `EXPIRED`). Every change returns a new `Order`; a fill is
applied once, by its trade id.

`decide(order, command, now_ms)` is the table of which command an order
accepts in which state (`COMMAND_TABLE`): the order after it, or a
`Refused` naming the FastPath code. A venue status moves only along
`STATUS_TRANSITIONS`; a final status is terminal (a late, older update
cannot reopen an order). Quantities, prices and fees are exact
(`Decimal`): an order is filled when its fills sum to its quantity, no
tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import orjson

from titan_actors.domain.money import ZERO, json_default, loads_exact, to_decimal, to_decimal_or_none
from titan_actors.domain.signals import OrderIntent

__all__ = [
    "COMMANDS",
    "COMMAND_TABLE",
    "EMULATED",
    "FINAL_STATUSES",
    "STATUS_TRANSITIONS",
    "Decision",
    "Fill",
    "Order",
    "Refused",
    "abort",
    "apply_fill",
    "arm_emulated_stop",
    "close_reason",
    "combined",
    "confirm",
    "decide",
    "expire",
    "fill_problem",
    "fire_emulated_stop",
    "order_from_intent",
    "stop_triggered",
    "with_status",
]

FINAL_STATUSES = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED"})
#: Venue statuses an order may move to from each (staying is always allowed).
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    "": frozenset({"SUBMITTED"}),
    "SUBMITTED": frozenset({"ACCEPTED", "PARTIALLY_FILLED", *FINAL_STATUSES}),
    "ACCEPTED": frozenset({"PARTIALLY_FILLED", *FINAL_STATUSES}),
    "PARTIALLY_FILLED": FINAL_STATUSES,
    **{final: frozenset() for final in FINAL_STATUSES},
}
COMMANDS = ("CONFIRM", "ABORT", "CANCEL")


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    liquidity: str  # maker | taker
    ts: int

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> Fill:
        return Fill(str(raw["trade_id"]), to_decimal(raw["qty"]), to_decimal(raw["price"]),
                    to_decimal(raw["fee"]), str(raw["liquidity"]), int(raw["ts"]))


@dataclass(frozen=True, slots=True)
class Order:
    client_order_id: str
    signal_id: str
    symbol: str
    side: str
    quantity: Decimal
    order_type: str  # market | limit | stop
    price: Decimal | None
    time_in_force: str
    reduce_only: bool
    exchange: str
    stop_loss: Decimal | None = None
    take_profits: tuple[Decimal, ...] = ()
    strategy_id: str | None = None
    phase: int | None = None
    ttl_ms: int = 5000
    prepared_at: int = 0
    expires_at: int = 0
    leg: str = "entry"  # entry | sl | tp1, tp2, ...
    version: int = 1  # of an exit leg: replaced by a new order (version + 1) where the venue cannot amend
    trigger_price: Decimal | None = None
    stage: str = "PREPARED"
    status: str = ""
    order_id: str = ""
    filled_qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    fees: Decimal = ZERO
    fills: tuple[Fill, ...] = field(default=())
    reason: str = ""
    confirmed_at: int = 0
    updated_at: int = 0
    arrival_price: Decimal | None = None  # the market price when its PREPARE arrived
    extra: dict[str, Any] | None = None  # the signal's fields the engine does not use (webhook)
    ladder: tuple[str, ...] = ()  # on an entry ladder's first rung: the client order ids of the others
    algo: dict[str, Any] | None = None  # an algo parent: its algorithm; never sent itself, its children are
    parent: str = ""  # an algo child: the parent's signal id
    refusal: str = ""  # refused before the venue had it: the FastPath code its CONFIRM was answered with

    @property
    def final(self) -> bool:
        return self.stage in ("ABORTED", "EXPIRED") or self.status in FINAL_STATUSES

    @property
    def remaining(self) -> Decimal:
        return max(self.quantity - self.filled_qty, ZERO)

    def public(self) -> dict[str, Any]:
        """The normalised order of the PREPARED reply."""
        return {
            "client_order_id": self.client_order_id, "symbol": self.symbol, "side": self.side,
            "quantity": self.quantity, "order_type": self.order_type, "price": self.price,
            "time_in_force": self.time_in_force, "reduce_only": self.reduce_only,
            "exchange": self.exchange, "stop_loss": self.stop_loss,
            "take_profits": list(self.take_profits), "strategy_id": self.strategy_id,
            "phase": self.phase, "ttl_ms": self.ttl_ms, **({"algo": self.algo} if self.algo else {}),
        }

    def to_json(self) -> bytes:
        # orjson reads dataclasses natively, ~20x faster than asdict
        return orjson.dumps(self, default=json_default)

    @staticmethod
    def from_json(data: bytes) -> Order:
        raw = loads_exact(data)
        for name in ("quantity", "filled_qty", "avg_price", "fees"):
            raw[name] = to_decimal(raw[name], field=name)
        for name in ("price", "stop_loss", "trigger_price", "arrival_price"):
            raw[name] = to_decimal_or_none(raw.get(name), field=name)
        raw["take_profits"] = tuple(to_decimal(p) for p in raw["take_profits"])
        raw["fills"] = tuple(Fill.from_dict(f) for f in raw["fills"])
        raw["ladder"] = tuple(raw.get("ladder", ()))
        return Order(**raw)


def order_from_intent(intent: OrderIntent, client_order_id: str, now_ms: int) -> Order:
    return Order(
        client_order_id=client_order_id, signal_id=intent.signal_id, symbol=intent.symbol,
        side=intent.side, quantity=intent.quantity, order_type=intent.order_type, price=intent.price,
        time_in_force=intent.time_in_force, reduce_only=intent.reduce_only, exchange=intent.exchange,
        stop_loss=intent.stop_loss, take_profits=intent.take_profits, strategy_id=intent.strategy_id,
        phase=intent.phase, ttl_ms=intent.ttl_ms, prepared_at=now_ms,
        expires_at=now_ms + intent.ttl_ms, updated_at=now_ms, arrival_price=intent.arrival_price,
        extra=intent.extra, algo=intent.algo, parent=intent.parent,
    )


def confirm(order: Order, now_ms: int) -> Order:
    return replace(order, stage="CONFIRMED", status="SUBMITTED", confirmed_at=now_ms, updated_at=now_ms)


def abort(order: Order, now_ms: int) -> Order:
    return replace(order, stage="ABORTED", updated_at=now_ms)


def expire(order: Order, now_ms: int) -> Order:
    return replace(order, stage="EXPIRED", updated_at=now_ms)


def with_status(order: Order, status: str, now_ms: int, *, order_id: str = "", reason: str = "") -> Order:
    """The order with the venue's `status`, if `STATUS_TRANSITIONS` allows the
    move (a status from the past is ignored; the order id is still learnt)."""
    if status != order.status and status not in STATUS_TRANSITIONS.get(order.status, frozenset()):
        return replace(order, order_id=order.order_id or order_id)
    return replace(order, status=status, order_id=order_id or order.order_id,
                   reason=reason or order.reason, updated_at=now_ms)


def combined(parts: Iterable[tuple[Decimal, Decimal, Decimal]]) -> tuple[Decimal, Decimal, Decimal]:
    """Orders taken as one — a ladder's rungs, an algo parent's children —
    from each one's (filled, average price, fees): the filled sum, its
    average price, the fees' sum."""
    filled = notional = fees = ZERO
    for qty, avg, fee in parts:
        filled += qty
        notional += qty * avg
        fees += fee
    return filled, notional / filled if filled else ZERO, fees


def close_reason(leg: str) -> str:
    """Why a position closed, by the leg whose fill closed it."""
    if leg == "flatten":
        return "flatten"  # an operator's kill switch
    return "stop_loss" if leg == "sl" else "take_profit" if leg.startswith("tp") else "signal"


EMULATED = "emulated:"  # the order id of a stop the engine holds instead of the venue


def arm_emulated_stop(order: Order, now_ms: int) -> Order:
    """A stop the venue cannot hold natively, held by the engine: ACCEPTED
    under an order id of its own, nothing sent."""
    return with_status(order, "ACCEPTED", now_ms, order_id=EMULATED + order.client_order_id,
                       reason="stop emulated by the engine: a reduce-only market order when the last "
                              "price reaches the trigger")


def stop_triggered(order: Any, last: Decimal) -> bool:
    """A sell stop fires when the price falls to its trigger, a buy stop when it
    rises to it (`order`: anything with `side` and `trigger_price`: ours, or
    the paper venue's)."""
    if order.trigger_price is None:
        return False
    return last <= order.trigger_price if order.side == "sell" else last >= order.trigger_price


def fire_emulated_stop(order: Order, last: Decimal, now_ms: int) -> Order:
    """The armed stop as the market order now to be sent (same client order id)."""
    return replace(order, order_type="market", status="SUBMITTED", order_id="", updated_at=now_ms,
                   reason=f"emulated stop triggered at {last} (trigger {order.trigger_price})")


@dataclass(frozen=True, slots=True)
class Refused:
    """A command the order does not accept in its state: a FastPath code and why."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What a command does: `order` is the order to journal (None: unchanged),
    `refused` the answer when it is refused, `repeat` when it was done before
    (answer what was answered then), `send` when the venue must act (confirm:
    send it; cancel: cancel it there)."""

    order: Order | None = None
    refused: Refused | None = None
    repeat: bool = False
    send: bool = False


def _state(order: Order | None, now_ms: int) -> str:
    if order is None:
        return "UNKNOWN"
    if order.stage == "PREPARED" and now_ms > order.expires_at:
        return "LAPSED"  # expired by the clock; journaled as EXPIRED by the decision
    if order.stage == "CONFIRMED":
        return "FINAL" if order.final else "LIVE"
    return order.stage


#: (state, command) → what happens. States: UNKNOWN (never prepared),
#: PREPARED, LAPSED (prepared, past its ttl), ABORTED, EXPIRED, LIVE
#: (confirmed, not final at the venue), FINAL (confirmed and final).
COMMAND_TABLE: dict[tuple[str, str], str] = {
    ("UNKNOWN", "CONFIRM"): "refuse UNKNOWN_SIGNAL",
    ("UNKNOWN", "ABORT"): "refuse UNKNOWN_SIGNAL",
    ("UNKNOWN", "CANCEL"): "refuse UNKNOWN_SIGNAL",
    ("PREPARED", "CONFIRM"): "confirm",
    ("PREPARED", "ABORT"): "abort",
    ("PREPARED", "CANCEL"): "refuse UNKNOWN_SIGNAL",
    ("LAPSED", "CONFIRM"): "expire",
    ("LAPSED", "ABORT"): "abort",
    ("LAPSED", "CANCEL"): "refuse UNKNOWN_SIGNAL",
    ("ABORTED", "CONFIRM"): "refuse ALREADY_FINAL",
    ("ABORTED", "ABORT"): "repeat",
    ("ABORTED", "CANCEL"): "refuse UNKNOWN_SIGNAL",
    ("EXPIRED", "CONFIRM"): "refuse EXPIRED",
    ("EXPIRED", "ABORT"): "refuse EXPIRED",
    ("EXPIRED", "CANCEL"): "refuse UNKNOWN_SIGNAL",
    ("LIVE", "CONFIRM"): "repeat",
    ("LIVE", "ABORT"): "refuse ALREADY_FINAL",
    ("LIVE", "CANCEL"): "cancel",
    ("FINAL", "CONFIRM"): "repeat",
    ("FINAL", "ABORT"): "refuse ALREADY_FINAL",
    ("FINAL", "CANCEL"): "refuse ALREADY_FINAL",
}


def _why(order: Order | None, state: str, command: str) -> str:
    if state == "UNKNOWN" or (command == "CANCEL" and state in ("PREPARED", "LAPSED", "ABORTED", "EXPIRED")):
        return ("signal_id: no confirmed order for this signal" if command == "CANCEL"
                else "signal_id: this signal was never prepared")
    assert order is not None
    if state in ("EXPIRED", "LAPSED"):
        return f"the prepared order expired at {order.expires_at}"
    if state == "ABORTED":
        return "the signal was aborted"
    if command == "ABORT":
        return "the signal was confirmed"
    return f"the order is {order.status}"


def decide(order: Order | None, command: str, now_ms: int) -> Decision:
    """`command` (CONFIRM, ABORT or CANCEL) against `order` as it is at
    `now_ms`, by `COMMAND_TABLE`. Never raises for a known command."""
    state = _state(order, now_ms)
    action = COMMAND_TABLE[(state, command)]
    if action.startswith("refuse "):
        return Decision(refused=Refused(action.split(" ", 1)[1], _why(order, state, command)))
    assert order is not None
    match action:
        case "confirm":
            return Decision(order=confirm(order, now_ms), send=True)
        case "abort":
            return Decision(order=abort(order, now_ms))
        case "expire":
            return Decision(order=expire(order, now_ms),
                            refused=Refused("EXPIRED", _why(order, state, command)))
        case "cancel":
            return Decision(send=True)
        case _:
            return Decision(repeat=True)


def fill_problem(fill: Fill) -> str:
    """Why a fill the venue reported cannot be applied ("" if it can)."""
    if fill.qty <= 0:
        return f"fill {fill.trade_id}: quantity {fill.qty} is not positive"
    if fill.price <= 0:
        return f"fill {fill.trade_id}: price {fill.price} is not positive"
    if fill.fee < 0 and -fill.fee > fill.qty * fill.price:
        return f"fill {fill.trade_id}: rebate {fill.fee} exceeds the notional"
    return ""


def apply_fill(order: Order, fill: Fill) -> Order:
    """The order with `fill` applied; unchanged when that trade id is known or
    the fill is not one (`fill_problem`: callers report it)."""
    if fill_problem(fill) or any(f.trade_id == fill.trade_id for f in order.fills):
        return order
    filled = order.filled_qty + fill.qty
    avg = (order.avg_price * order.filled_qty + fill.price * fill.qty) / filled
    done = filled >= order.quantity
    status = "FILLED" if done else "PARTIALLY_FILLED"
    if order.status in FINAL_STATUSES:
        status = order.status  # a fill that raced a cancel or came after FILLED: it counts, the status stays
    return replace(order, filled_qty=filled, avg_price=avg, fees=order.fees + fill.fee,
                   fills=(*order.fills, fill), status=status, updated_at=fill.ts)
