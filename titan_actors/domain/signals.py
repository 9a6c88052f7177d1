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

from titan_actors.domain.algos import parse_algo
from titan_actors.domain.dead_man import MAX_TIMEOUT_MS, MIN_TIMEOUT_MS
from titan_actors.domain.money import to_decimal
from titan_actors.domain.schema import Field, Model
from titan_actors.domain.trading_state import SCOPE_PATTERN

__all__ = [
    "AUTO",
    "COMMON",
    "HEARTBEAT",
    "MAX_PRICE",
    "MAX_QUANTITY",
    "ORDER",
    "REQUEST_TYPES",
    "SCOPE",
    "OrderIntent",
    "Refusal",
    "Request",
    "normalise_symbol",
    "parse_intent",
    "parse_request",
]

REQUEST_TYPES = ("PREPARE", "CONFIRM", "ABORT", "CANCEL", "PING", "HEARTBEAT")
ORDER_TYPES = ("market", "limit")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "PO")
MAX_QUANTITY = Decimal("1e9")
MAX_PRICE = Decimal("1e12")
MAX_TTL_MS = 60_000
DEFAULT_TTL_MS = 5_000
MAX_TAKE_PROFITS = 10
MAX_SLIPPAGE_BPS = 10_000
#: `exchange: "auto"`: the risk guard routes the order to the venue whose book executes it best.
AUTO = "auto"
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
    #: Size by risk (the webhook with `[sizing] risk_per_trade_pct`): the
    #: risk guard sets `quantity` from equity, this percentage and the
    #: distance to `stop_loss`; `quantity` is 0 until then.
    risk_pct: Decimal | None = None
    #: The market price when the PREPARE arrived (set by the risk guard).
    arrival_price: Decimal | None = None
    #: Fields of the signal the engine does not use, kept with it (webhook).
    extra: dict[str, Any] | None = None
    #: An entry ladder (webhook `entry_zone` of 2-5 prices): one limit order
    #: per price, the quantity split between them; `price` is then the worst
    #: of them (what risk judges).
    ladder: tuple[Decimal, ...] = ()
    #: Slippage control: the risk guard caps the order at the arrival price +/- this.
    max_slippage_bps: Decimal | None = None
    #: An execution algorithm (`domain.algos`): this order is a parent, sent as children.
    algo: dict[str, Any] | None = None
    #: A child of an algo parent: the parent's signal id.
    parent: str = ""
    #: Smart routing may split the order over several venues (`exchange` auto).
    split: bool = False


@dataclass(frozen=True, slots=True)
class Request:
    type: str
    signal_id: str
    ts: int
    req_id: str | None
    intent: OrderIntent | None = None
    scope: str = ""  # HEARTBEAT
    timeout_ms: int = 0  # HEARTBEAT: 0 disarms


_SIGNAL_ID_FIELD = Field("signal_id", "string",
                         "the signal's id: each (signal_id, type) is executed at most once",
                         pattern=_SIGNAL_ID.pattern)

#: The order fields of a PREPARE (and of the NATS place command's body).
ORDER = Model("Order", "The order a PREPARE asks for. `side` or `direction` is required; `price` is "
              "required for a limit order; `time_in_force` PO needs a limit order.", (
    _SIGNAL_ID_FIELD,
    Field("exchange", "string", "the venue's name, or auto (smart routing from the venues' L2 books); "
          "default from [routing] default_venue", max_length=64),
    Field("symbol", "string", "BTCUSDT style or ccxt unified BTC/USDT:USDT", required=True, max_length=40),
    Field("side", "string", "buy or sell", enum=("buy", "sell")),
    Field("direction", "integer", "1 buy / -1 sell (alias of side)", enum=(1, -1)),
    Field("quantity", "number", "in base units", positive=True, maximum=MAX_QUANTITY),
    Field("order_type", "string", "market or limit", required=True, enum=ORDER_TYPES),
    Field("price", "number", "the limit price (required for limit)", positive=True, maximum=MAX_PRICE),
    Field("time_in_force", "string", "GTC (default), IOC, FOK or PO (post-only)", enum=TIME_IN_FORCE),
    Field("reduce_only", "boolean", "default false"),
    Field("stop_loss", "number", "bracket stop: placed reduce-only once the entry fills", positive=True,
          maximum=MAX_PRICE, nullable=True),
    Field("take_profits", "numbers", "bracket take-profit prices, the filled quantity split between them",
          positive=True, maximum=MAX_PRICE, max_items=MAX_TAKE_PROFITS, nullable=True),
    Field("strategy_id", "string", "tag carried into events", max_length=128),
    Field("phase", "integer", "tag carried into events"),
    Field("ttl_ms", "integer", "how long the prepared order stays confirmable",
          minimum=1, maximum=MAX_TTL_MS),
    Field("algo", "object", "an execution algorithm: {type: TWAP | VWAP | ICEBERG | CHASE, ...} "
          "(docs/protocols.md)"),
    Field("split", "boolean", "with exchange auto: split the order over the venues' books"),
    Field("max_slippage_bps", "number", "slippage control: a market order becomes a limit IOC at the "
          "arrival price +/- this many basis points; a limit order's price is held within it",
          minimum=0, maximum=MAX_SLIPPAGE_BPS),
), extra=True)

#: The fields every FastPath request has.
COMMON = Model("Request", "A FastPath request (shared/spec/fastpath-ipc.md).", (
    Field("type", "string", "the request type", required=True, enum=REQUEST_TYPES),
    Field("req_id", "string", "echoed in the reply", max_length=128),
    Field("ts", "integer", "the sender's clock, milliseconds since the Unix epoch", required=True),
    _SIGNAL_ID_FIELD,
), extra=True)


SCOPE = Field("scope", "string", "global (default), venue:NAME or symbol:SYMBOL", pattern=SCOPE_PATTERN)

#: A HEARTBEAT's own fields (the engine's addition to FastPath: the dead man's switch).
HEARTBEAT = Model("Heartbeat", "Arm or refresh the dead man's switch of a scope: unless the next heartbeat "
                  "comes within timeout_ms, the engine cancels the scope's resting orders and sets it "
                  "REDUCING. timeout_ms 0 disarms it.", (
    SCOPE,
    Field("timeout_ms", "integer", f"0 (disarm) or {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}", required=True,
          minimum=0, maximum=MAX_TIMEOUT_MS),
), extra=True)


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


def _decimal(obj: Mapping[str, Any], field: str) -> Decimal | None:
    """A field the model has checked (a finite number), exactly; None if absent."""
    value = obj.get(field)
    return None if value is None else to_decimal(value, field=field)


def parse_request(
    obj: Mapping[str, Any],
    *,
    now_ms: int,
    window_ms: int,
    venues: Mapping[str, frozenset[str]],
    default_venue: str,
    ts_required: bool = True,
    risk_pct: Decimal | None = None,
    extra: dict[str, Any] | None = None,
    ladder: tuple[Decimal, ...] = (),
) -> Request | Refusal:
    """Validate a decoded request. `venues` maps venue name → its symbols.
    Without `ts_required` (the webhook) a request may leave `ts` out; one
    that carries it is held to the replay window."""
    problem = COMMON.problem(obj, skip=frozenset() if ts_required or "ts" in obj else frozenset({"ts"}))
    if problem is not None:
        if problem.startswith("ts:"):
            problem = "ts: must be an integer (milliseconds since the Unix epoch)"
        return Refusal("INVALID", problem)
    kind, req_id, ts = obj["type"], obj.get("req_id"), obj.get("ts", now_ms)
    signal_id = obj.get("signal_id")
    if kind not in ("PING", "HEARTBEAT") and signal_id is None:
        return Refusal("INVALID", "signal_id: must be 1..128 characters of A-Za-z0-9_.:-")
    if abs(now_ms - ts) > window_ms:
        return Refusal("STALE", f"ts: {ts} is {now_ms - ts} ms from the engine clock (window {window_ms} ms)")
    if kind == "HEARTBEAT":
        problem = HEARTBEAT.problem(obj)
        timeout = obj.get("timeout_ms", 0)
        if problem is None and 0 < timeout < MIN_TIMEOUT_MS:
            problem = f"timeout_ms: must be 0 (disarm) or at least {MIN_TIMEOUT_MS}"
        if problem is not None:
            return Refusal("INVALID", problem)
        return Request(kind, "", ts, req_id, scope=obj.get("scope", "global"), timeout_ms=timeout)
    if kind != "PREPARE":
        return Request(kind, signal_id or "", ts, req_id)
    intent = parse_intent(obj, venues=venues, default_venue=default_venue, risk_pct=risk_pct, extra=extra,
                          ladder=ladder)
    if isinstance(intent, Refusal):
        return intent
    return Request(kind, signal_id, ts, req_id, intent)


def parse_intent(
    obj: Mapping[str, Any], *, venues: Mapping[str, frozenset[str]], default_venue: str,
    risk_pct: Decimal | None = None, extra: dict[str, Any] | None = None,
    ladder: tuple[Decimal, ...] = (),
) -> OrderIntent | Refusal:
    """The order fields of a PREPARE (also the NATS place command's body),
    checked against `ORDER`, then the rules that tie them together. With
    `risk_pct` a missing quantity is sized by risk (a stop loss is then
    required)."""
    if not isinstance(obj.get("signal_id"), str):
        return Refusal("INVALID", "signal_id: must be 1..128 characters of A-Za-z0-9_.:-")
    problem = ORDER.problem(obj)
    if problem is not None:
        return Refusal("INVALID", problem)
    exchange = obj.get("exchange", default_venue)
    if exchange not in venues and exchange != AUTO:
        return Refusal("INVALID", f"exchange: must be one of {', '.join(sorted(venues))} or {AUTO}")
    symbol = normalise_symbol(obj["symbol"])
    if symbol is None:
        return Refusal("INVALID", "symbol: must look like BTCUSDT or BTC/USDT:USDT")
    if exchange == AUTO and not any(symbol in traded for traded in venues.values()):
        return Refusal("INVALID", f"symbol: {symbol} is not traded on any venue")
    if exchange != AUTO and symbol not in venues[exchange]:
        return Refusal("INVALID", f"symbol: {symbol} is not traded on venue {exchange}")
    if "side" in obj:
        side = obj["side"]
    elif "direction" in obj:
        side = "buy" if obj["direction"] == 1 else "sell"
    else:
        return Refusal("INVALID", "side: missing (buy or sell, or direction 1 / -1)")
    if "quantity" not in obj and risk_pct is None:
        return Refusal("INVALID", "quantity: missing")
    if "quantity" not in obj and obj.get("stop_loss") is None:
        return Refusal("INVALID", "stop_loss: required when quantity is left out (sizing by risk)")
    order_type = obj["order_type"]
    if order_type == "limit" and "price" not in obj:
        return Refusal("INVALID", "price: required for a limit order")
    tif = obj.get("time_in_force", "GTC")
    if tif == "PO" and order_type != "limit":
        return Refusal("INVALID", "time_in_force: PO (post-only) needs a limit order")
    if obj.get("split") and exchange != AUTO:
        return Refusal("INVALID", "split: only with exchange auto")
    algo = None
    if obj.get("algo") is not None and obj.get("split"):
        return Refusal("INVALID", "split: not with an algo")
    if obj.get("algo") is not None:
        if ladder or obj.get("stop_loss") is not None or obj.get("take_profits"):
            return Refusal("INVALID", "algo: not with an entry zone or a bracket (stop_loss, take_profits)")
        algo = parse_algo(obj["algo"], order_type=order_type,
                          quantity=to_decimal(obj["quantity"]) if "quantity" in obj else Decimal(0))
        if isinstance(algo, str):
            return Refusal("INVALID", algo)
    price = _decimal(obj, "price") if order_type == "limit" else None
    if ladder:
        price = max(ladder) if side == "buy" else min(ladder)
    return OrderIntent(
        signal_id=obj["signal_id"], symbol=symbol, side=side,
        quantity=to_decimal(obj["quantity"]) if "quantity" in obj else Decimal(0),
        order_type=order_type, price=price,
        time_in_force=tif, reduce_only=obj.get("reduce_only", False), exchange=exchange,
        stop_loss=_decimal(obj, "stop_loss"),
        take_profits=tuple(to_decimal(p) for p in obj.get("take_profits") or ()),
        strategy_id=obj.get("strategy_id"), phase=obj.get("phase"), ttl_ms=obj.get("ttl_ms", DEFAULT_TTL_MS),
        risk_pct=risk_pct if "quantity" not in obj else None, extra=extra or None, ladder=ladder,
        max_slippage_bps=_decimal(obj, "max_slippage_bps"), algo=algo, split=bool(obj.get("split")),
    )
