"""FastPath requests, validated into typed commands, pure.

`parse_request(obj, ...)` returns a `Request` or a `Refusal` naming the field
and the reason (the gateway answers it as `REJECTED`). It never raises on
bad input: anything a sender can put in a JSON object is an answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from titan_actors.domain.money import to_decimal

__all__ = [
    "MAX_PRICE",
    "MAX_QUANTITY",
    "REQUEST_TYPES",
    "OrderIntent",
    "Refusal",
    "Request",
    "normalise_symbol",
    "parse_intent",
    "parse_request",
]

REQUEST_TYPES = ("PREPARE", "CONFIRM", "ABORT", "CANCEL", "PING")
ORDER_TYPES = ("market", "limit")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "PO")
MAX_QUANTITY = Decimal("1e9")
MAX_PRICE = Decimal("1e12")
MAX_TTL_MS = 60_000
DEFAULT_TTL_MS = 5_000
MAX_TAKE_PROFITS = 10
_SIGNAL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_EXCHANGE_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")
_UNIFIED_SYMBOL = re.compile(r"([A-Z0-9]{1,15})/([A-Z0-9]{1,10})(?::([A-Z0-9]{1,10}))?")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused before anything was done: `code` is a FastPath
    `REJECTED` code, `reason` names the field."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A PREPARE, normalised: exchange-style symbol, `side` buy/sell, exact
    (Decimal) quantity and prices."""

    signal_id: str
    symbol: str
    side: str
    quantity: Decimal
    order_type: str
    price: Decimal | None
    time_in_force: str
    reduce_only: bool
    exchange: str
    stop_loss: Decimal | None
    take_profits: tuple[Decimal, ...]
    strategy_id: str | None
    phase: int | None
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class Request:
    type: str
    signal_id: str
    ts: int
    req_id: str | None
    intent: OrderIntent | None = None


def normalise_symbol(value: str) -> str | None:
    """`BTCUSDT` stays; ccxt unified `BTC/USDT:USDT` or `BTC/USDT` becomes `BTCUSDT`."""
    if _EXCHANGE_SYMBOL.fullmatch(value):
        return value
    unified = _UNIFIED_SYMBOL.fullmatch(value)
    if unified:
        return unified.group(1) + unified.group(2)
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(obj: Mapping[str, Any], field: str, *, limit: Decimal) -> Decimal | Refusal:
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return Refusal("INVALID", f"{field}: must be a number")
    try:
        exact = to_decimal(value, field=field)
    except ValueError:
        return Refusal("INVALID", f"{field}: must be a finite number > 0")
    if exact <= 0:
        return Refusal("INVALID", f"{field}: must be a finite number > 0")
    if exact > limit:
        return Refusal("INVALID", f"{field}: {exact:g} is above the limit {limit:g}")
    return exact


def parse_request(
    obj: Mapping[str, Any],
    *,
    now_ms: int,
    window_ms: int,
    venues: Mapping[str, frozenset[str]],
    default_venue: str,
) -> Request | Refusal:
    """Validate a decoded request. `venues` maps venue name → its symbols."""
    kind = obj.get("type")
    if kind not in REQUEST_TYPES:
        return Refusal("INVALID", f"type: must be one of {', '.join(REQUEST_TYPES)}")
    req_id = obj.get("req_id")
    if req_id is not None and (not isinstance(req_id, str) or len(req_id) > 128):
        return Refusal("INVALID", "req_id: must be a string of at most 128 characters")
    ts = obj.get("ts")
    if not _is_int(ts):
        return Refusal("INVALID", "ts: must be an integer (milliseconds since the Unix epoch)")
    signal_id = obj.get("signal_id")
    if kind != "PING" and (not isinstance(signal_id, str) or not _SIGNAL_ID.fullmatch(signal_id)):
        return Refusal("INVALID", "signal_id: must be 1..128 characters of A-Za-z0-9_.:-")
    if abs(now_ms - ts) > window_ms:
        return Refusal("STALE", f"ts: {ts} is {now_ms - ts} ms from the engine clock (window {window_ms} ms)")
    if kind != "PREPARE":
        return Request(kind, signal_id or "", ts, req_id)
    intent = parse_intent(obj, venues=venues, default_venue=default_venue)
    if isinstance(intent, Refusal):
        return intent
    return Request(kind, signal_id, ts, req_id, intent)


def parse_intent(
    obj: Mapping[str, Any], *, venues: Mapping[str, frozenset[str]], default_venue: str
) -> OrderIntent | Refusal:
    """The order fields of a PREPARE (also the NATS place command's body)."""
    signal_id = obj.get("signal_id")
    if not isinstance(signal_id, str) or not _SIGNAL_ID.fullmatch(signal_id):
        return Refusal("INVALID", "signal_id: must be 1..128 characters of A-Za-z0-9_.:-")
    exchange = obj.get("exchange", default_venue)
    if not isinstance(exchange, str) or exchange not in venues:
        return Refusal("INVALID", f"exchange: must be one of {', '.join(sorted(venues))}")
    raw_symbol = obj.get("symbol")
    symbol = normalise_symbol(raw_symbol) if isinstance(raw_symbol, str) else None
    if symbol is None:
        return Refusal("INVALID", "symbol: must look like BTCUSDT or BTC/USDT:USDT")
    if symbol not in venues[exchange]:
        return Refusal("INVALID", f"symbol: {symbol} is not traded on venue {exchange}")
    side = _side(obj)
    if isinstance(side, Refusal):
        return side
    if "quantity" not in obj:
        return Refusal("INVALID", "quantity: missing")
    quantity = _number(obj, "quantity", limit=MAX_QUANTITY)
    if isinstance(quantity, Refusal):
        return quantity
    order_type = obj.get("order_type")
    if order_type not in ORDER_TYPES:
        return Refusal("INVALID", "order_type: must be market or limit")
    price = None
    if order_type == "limit":
        if "price" not in obj:
            return Refusal("INVALID", "price: required for a limit order")
        price = _number(obj, "price", limit=MAX_PRICE)
        if isinstance(price, Refusal):
            return price
    tif = obj.get("time_in_force", "GTC")
    if tif not in TIME_IN_FORCE:
        return Refusal("INVALID", f"time_in_force: must be one of {', '.join(TIME_IN_FORCE)}")
    if tif == "PO" and order_type != "limit":
        return Refusal("INVALID", "time_in_force: PO (post-only) needs a limit order")
    reduce_only = obj.get("reduce_only", False)
    if not isinstance(reduce_only, bool):
        return Refusal("INVALID", "reduce_only: must be true or false")
    bracket = _bracket(obj)
    if isinstance(bracket, Refusal):
        return bracket
    tags = _tags(obj)
    if isinstance(tags, Refusal):
        return tags
    ttl_ms = obj.get("ttl_ms", DEFAULT_TTL_MS)
    if not _is_int(ttl_ms) or not 1 <= ttl_ms <= MAX_TTL_MS:
        return Refusal("INVALID", f"ttl_ms: must be an integer from 1 to {MAX_TTL_MS}")
    return OrderIntent(
        signal_id=signal_id, symbol=symbol, side=side, quantity=quantity, order_type=order_type,
        price=price, time_in_force=tif, reduce_only=reduce_only, exchange=exchange,
        stop_loss=bracket[0], take_profits=bracket[1], strategy_id=tags[0], phase=tags[1],
        ttl_ms=ttl_ms,
    )


def _side(obj: Mapping[str, Any]) -> str | Refusal:
    if "side" in obj:
        side = obj["side"]
        if side in ("buy", "sell"):
            return side
        return Refusal("INVALID", "side: must be buy or sell")
    direction = obj.get("direction")
    if _is_int(direction) and direction in (1, -1):
        return "buy" if direction == 1 else "sell"
    if "direction" in obj:
        return Refusal("INVALID", "direction: must be 1 or -1")
    return Refusal("INVALID", "side: missing (buy or sell, or direction 1 / -1)")


def _bracket(obj: Mapping[str, Any]) -> tuple[Decimal | None, tuple[Decimal, ...]] | Refusal:
    stop_loss = None
    if obj.get("stop_loss") is not None:
        stop_loss = _number(obj, "stop_loss", limit=MAX_PRICE)
        if isinstance(stop_loss, Refusal):
            return stop_loss
    raw = obj.get("take_profits")
    if raw is None:
        return stop_loss, ()
    if not isinstance(raw, list) or len(raw) > MAX_TAKE_PROFITS:
        return Refusal("INVALID", f"take_profits: must be a list of at most {MAX_TAKE_PROFITS} prices")
    take_profits = []
    for i, value in enumerate(raw):
        price = _number({f"take_profits[{i}]": value}, f"take_profits[{i}]", limit=MAX_PRICE)
        if isinstance(price, Refusal):
            return price
        take_profits.append(price)
    return stop_loss, tuple(take_profits)


def _tags(obj: Mapping[str, Any]) -> tuple[str | None, int | None] | Refusal:
    strategy_id = obj.get("strategy_id")
    if strategy_id is not None and (not isinstance(strategy_id, str) or len(strategy_id) > 128):
        return Refusal("INVALID", "strategy_id: must be a string of at most 128 characters")
    phase = obj.get("phase")
    if phase is not None and not _is_int(phase):
        return Refusal("INVALID", "phase: must be an integer")
    return strategy_id, phase
