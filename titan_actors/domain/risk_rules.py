"""Pre-trade risk rules, pure. Each rule looks at one order against the
policy and the exposure view and returns a `Verdict` that names it.

A limit of 0 means "no limit". Per-symbol limits (`Policy.symbols`) override
the global ones for that symbol. Notional is quantity * the price the order
is judged at: its limit price, else the last market price, else (by policy)
the venue's reference price.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any

from titan_actors.domain.money import ZERO, to_decimal

__all__ = [
    "RULES",
    "Exposure",
    "OrderView",
    "Policy",
    "PolicyError",
    "Verdict",
    "check_order",
    "policy_from_config",
    "reduces_position",
    "size_by_risk",
    "slippage_cap",
]


NO_MARKET_PRICE = ("reference", "refuse_market", "refuse")


class PolicyError(ValueError):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"risk.{key}: {reason}")
        self.key = key


@dataclass(frozen=True, slots=True)
class Limits:
    max_order_qty: Decimal = ZERO
    max_order_notional: Decimal = ZERO
    max_position_notional: Decimal = ZERO
    max_open_orders: int = 0


@dataclass(frozen=True, slots=True)
class Policy:
    limits: Limits = field(default_factory=Limits)
    symbols: dict[str, Limits] = field(default_factory=dict)
    max_gross_notional: Decimal = ZERO
    max_open_orders_total: int = 0
    max_leverage: Decimal = ZERO
    equity: Decimal = ZERO
    price_band_bps: Decimal = ZERO
    # With no market price yet: "reference" judges every order at the venue's
    # reference price; "refuse_market" does so for limit orders and refuses
    # market orders; "refuse" refuses both.
    no_market_price: str = "reference"
    # A market price older than this (ms; 0: any age) is not used: market
    # orders are refused (`price_age`), the rest judged as if none were known.
    max_price_age_ms: float = 30_000.0
    orders_per_second_per_venue: float = 0.0
    orders_per_second_per_strategy: float = 0.0
    daily_loss_limit: Decimal = ZERO
    venue_error_limit: int = 0
    allowed_symbols: tuple[str, ...] = ()
    allowed_venues: tuple[str, ...] = ()

    def limits_for(self, symbol: str) -> Limits:
        return self.symbols.get(symbol, self.limits)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["limits"] = {f.name: getattr(self.limits, f.name) for f in fields(Limits)}
        out["symbols"] = {s: {f.name: getattr(lim, f.name) for f in fields(Limits)}
                          for s, lim in self.symbols.items()}
        out["allowed_symbols"], out["allowed_venues"] = list(self.allowed_symbols), list(self.allowed_venues)
        return out


_LIMIT_KEYS = {f.name for f in fields(Limits)}
_POLICY_KEYS = {f.name for f in fields(Policy)} - {"limits", "symbols"}
#: Rates and ages, not amounts of money: plain numbers.
_PLAIN_KEYS = ("max_price_age_ms", "orders_per_second_per_venue", "orders_per_second_per_strategy")


def _non_negative(key: str, value: Any, integer: bool = False) -> Any:
    """A limit: an int for counts, a float for rates and ages, else an exact Decimal."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal) or value < 0 \
            or not math.isfinite(value):
        raise PolicyError(key, "must be a number >= 0 (0 = no limit)")
    if integer and int(value) != value:
        raise PolicyError(key, "must be a whole number")
    if integer:
        return int(value)
    return value + 0.0 if key.split(".")[-1] in _PLAIN_KEYS else to_decimal(value, field=key)


def _limits(prefix: str, raw: Mapping[str, Any], base: Limits) -> Limits:
    values = {}
    for key, value in raw.items():
        if key not in _LIMIT_KEYS:
            raise PolicyError(f"{prefix}{key}", "unknown key")
        values[key] = _non_negative(f"{prefix}{key}", value, integer=key == "max_open_orders")
    return replace(base, **values)


def policy_from_config(raw: Mapping[str, Any]) -> Policy:
    """The `[risk]` table, validated; `PolicyError` names the key."""
    raw = dict(raw)
    symbols_raw = raw.pop("symbols", {}) or {}
    limits = _limits("", {k: v for k, v in raw.items() if k in _LIMIT_KEYS}, Limits())
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _LIMIT_KEYS:
            continue
        if key not in _POLICY_KEYS:
            raise PolicyError(key, "unknown key")
        if key == "no_market_price":
            if value not in NO_MARKET_PRICE:
                raise PolicyError(key, f"must be one of {', '.join(NO_MARKET_PRICE)}")
            values[key] = value
        elif key in ("allowed_symbols", "allowed_venues"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PolicyError(key, "must be a list of names")
            values[key] = tuple(value)
        else:
            whole = key in ("max_open_orders_total", "venue_error_limit")
            values[key] = _non_negative(key, value, integer=whole)
    if not isinstance(symbols_raw, Mapping):
        raise PolicyError("symbols", "must be a table of [risk.symbols.SYMBOL] tables")
    symbols = {s: _limits(f"symbols.{s}.", t, limits) for s, t in symbols_raw.items()}
    policy = Policy(limits=limits, symbols=symbols, **values)
    if policy.max_leverage and not policy.equity:
        raise PolicyError("equity", "must be set (> 0) when max_leverage is")
    return policy


@dataclass(frozen=True, slots=True)
class OrderView:
    venue: str
    symbol: str
    side: str
    qty: Decimal
    order_type: str
    price: Decimal | None
    reduce_only: bool
    strategy_id: str | None = None


@dataclass(frozen=True, slots=True)
class Exposure:
    """What the risk guard knows, filled and pending, for the order's symbol and overall."""

    position_qty: Decimal = ZERO  # net filled, all venues
    open_buy_qty: Decimal = ZERO  # open and prepared orders
    open_sell_qty: Decimal = ZERO
    open_orders: int = 0
    gross_notional_other: Decimal = ZERO  # every other symbol, worst case
    open_orders_total: int = 0
    realised_today: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: str
    ok: bool
    reason: str = ""


def _judged_price(order: OrderView, policy: Policy, market: Decimal | None,
                  reference: Decimal | None) -> tuple[Decimal | None, str]:
    if order.price is not None:
        return order.price, "limit price"
    if market is not None:
        return market, "market price"
    if policy.no_market_price != "refuse" and reference is not None:
        return reference, "reference price"
    return None, ""


def check_order(order: OrderView, policy: Policy, exposure: Exposure, *, market: Decimal | None,
                reference: Decimal | None, venue_rate: float | None,
                strategy_rate: float | None, market_age_ms: float | None = None) -> list[Verdict]:
    """Every rule's verdict, in order. `*_rate` are the tokens left in the
    throttles (None: no throttle); `market_age_ms` how old `market` is."""
    limits = policy.limits_for(order.symbol)
    stale = _stale(policy, market, market_age_ms)
    if stale:
        market = None
    price, basis = _judged_price(order, policy, market, reference)
    verdicts = [
        _allowed("allowed_venue", order.venue, policy.allowed_venues),
        _allowed("allowed_symbol", order.symbol, policy.allowed_symbols),
        _price_known(order, policy, market, price),
        _price_age(order, policy, market_age_ms if stale else None),
        _price_band(order, policy, market, reference),
        _cap("max_order_qty", order.qty, limits.max_order_qty, "quantity"),
        _cap("max_order_notional", order.qty * price if price else ZERO, limits.max_order_notional,
             f"notional at the {basis}"),
        _position(order, limits, exposure, price),
        _gross(order, policy, exposure, price),
        _leverage(order, policy, exposure, price),
        _count("max_open_orders", exposure.open_orders + 1, limits.max_open_orders,
               f"open orders on {order.symbol}"),
        _count("max_open_orders_total", exposure.open_orders_total + 1, policy.max_open_orders_total,
               "open orders"),
        _rate("rate_per_venue", venue_rate, f"orders per second on {order.venue}"),
        _rate("rate_per_strategy", strategy_rate, f"orders per second of strategy {order.strategy_id}"),
    ]
    return verdicts


RULES = ("allowed_venue", "allowed_symbol", "market_price", "price_age", "price_band", "max_order_qty",
         "max_order_notional", "max_position_notional", "max_gross_notional", "max_leverage",
         "max_open_orders", "max_open_orders_total", "rate_per_venue", "rate_per_strategy")


def _allowed(rule: str, name: str, allowed: tuple[str, ...]) -> Verdict:
    if allowed and name not in allowed:
        return Verdict(rule, False, f"{name} is not allowed (allowed: {', '.join(allowed)})")
    return Verdict(rule, True)


def _price_known(order: OrderView, policy: Policy, market: Decimal | None, price: Decimal | None) -> Verdict:
    if price is None or (market is None and policy.no_market_price == "refuse"):
        return Verdict("market_price", False, "no market price is known for this symbol")
    if order.order_type == "market" and market is None and policy.no_market_price == "refuse_market":
        return Verdict("market_price", False, "market orders need a market price; none is known yet")
    return Verdict("market_price", True)


def _stale(policy: Policy, market: Decimal | None, age_ms: float | None) -> bool:
    return bool(market is not None and policy.max_price_age_ms and age_ms is not None
                and age_ms > policy.max_price_age_ms)


def _price_age(order: OrderView, policy: Policy, stale_age_ms: float | None) -> Verdict:
    if order.order_type == "market" and stale_age_ms is not None:
        return Verdict("price_age", False,
                       f"the last market price of {order.symbol} is {stale_age_ms:.0f} ms old "
                       f"(max_price_age_ms {policy.max_price_age_ms:.0f}); a market order needs a fresh one")
    return Verdict("price_age", True)


def _price_band(order: OrderView, policy: Policy, market: Decimal | None,
                reference: Decimal | None) -> Verdict:
    anchor = market if market is not None else reference
    if not policy.price_band_bps or order.price is None or anchor is None:
        return Verdict("price_band", True)
    off = abs(order.price - anchor) / anchor * 10_000
    if off > policy.price_band_bps:
        return Verdict("price_band", False, f"price {order.price:g} is {off:.0f} bps from {anchor:g} "
                                            f"(band {policy.price_band_bps:g} bps)")
    return Verdict("price_band", True)


def _cap(rule: str, value: Decimal, limit: Decimal, what: str) -> Verdict:
    if limit and value > limit:
        return Verdict(rule, False, f"{what} {value:g} is above the limit {limit:g}")
    return Verdict(rule, True)


def _count(rule: str, value: int, limit: int, what: str) -> Verdict:
    if limit and value > limit:
        return Verdict(rule, False, f"{what} would be {value}, above the limit {limit}")
    return Verdict(rule, True)


def _worst_position(order: OrderView, exposure: Exposure) -> Decimal:
    """The largest absolute position the symbol can reach if every pending order fills."""
    buys = exposure.open_buy_qty + (order.qty if order.side == "buy" else ZERO)
    sells = exposure.open_sell_qty + (order.qty if order.side == "sell" else ZERO)
    return max(abs(exposure.position_qty + buys), abs(exposure.position_qty - sells))


def _notional(rule: str, order: OrderView, exposure: Exposure, limit: Decimal, value: Decimal | None,
              what: str) -> Verdict:
    """A worst-case notional rule; an order that only reduces the position passes."""
    if not limit or value is None or value <= limit or _reduces(order, exposure):
        return Verdict(rule, True)
    return Verdict(rule, False, f"{what} could reach {value:g}, above the limit {limit:g}")


def _position(order: OrderView, limits: Limits, exposure: Exposure, price: Decimal | None) -> Verdict:
    value = _worst_position(order, exposure) * price if price is not None else None
    return _notional("max_position_notional", order, exposure, limits.max_position_notional, value,
                     "position notional")


def _gross(order: OrderView, policy: Policy, exposure: Exposure, price: Decimal | None) -> Verdict:
    value = exposure.gross_notional_other + _worst_position(order, exposure) * price if price else None
    return _notional("max_gross_notional", order, exposure, policy.max_gross_notional, value,
                     "gross notional")


def _leverage(order: OrderView, policy: Policy, exposure: Exposure, price: Decimal | None) -> Verdict:
    gross = exposure.gross_notional_other + _worst_position(order, exposure) * price if price else None
    value = gross / policy.equity if gross is not None and policy.equity else None
    return _notional("max_leverage", order, exposure, policy.max_leverage, value, "leverage (x equity)")


def _reduces(order: OrderView, exposure: Exposure) -> bool:
    """An order that can only bring the filled position towards zero."""
    position = exposure.position_qty
    if order.side == "sell":
        return position > 0 and order.qty + exposure.open_sell_qty <= position
    return position < 0 and order.qty + exposure.open_buy_qty <= -position


def _rate(rule: str, tokens: float | None, what: str) -> Verdict:
    if tokens is not None and tokens < 1:
        return Verdict(rule, False, f"too many {what}")
    return Verdict(rule, True)


def reduces_position(order: OrderView, exposure: Exposure) -> bool:
    return _reduces(order, exposure)


def size_by_risk(*, equity: Decimal, risk_pct: Decimal, entry: Decimal | None,
                 stop_loss: Decimal) -> Decimal | str:
    """Quantity = equity * risk_pct / 100 / |entry - stop_loss|, exact (the
    venue rounds it down to its step); or why it cannot be sized (a reason
    naming the field)."""
    if entry is None:
        return "quantity: no market price to size from yet"
    if not equity:
        return "quantity: [sizing] equity (or [risk] equity) is not set"
    distance = abs(entry - stop_loss)
    if not distance:
        return "stop_loss: equals the entry price; nothing to size by"
    return equity * risk_pct / 100 / distance


def slippage_cap(*, side: str, order_type: str, price: Decimal | None, time_in_force: str,
                 arrival: Decimal | None, max_bps: Decimal) -> tuple[str, Decimal, str] | str:
    """Slippage control: (order type, price, time in force) within `max_bps`
    of the arrival price — a market order becomes a limit IOC at arrival +/-
    the cap, a limit order's price is held inside it — or why it cannot be
    capped (a reason naming the field)."""
    if arrival is None:
        return "max_slippage_bps: no market price to cap the order against"
    cap = arrival * (1 + max_bps / 10_000) if side == "buy" else arrival * (1 - max_bps / 10_000)
    if order_type == "market":
        return "limit", cap, "IOC"
    assert price is not None
    return order_type, min(price, cap) if side == "buy" else max(price, cap), time_in_force
