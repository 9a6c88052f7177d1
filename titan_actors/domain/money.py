"""Exact quantities, prices and money, pure.

Every quantity, price, fee and PnL in the domain is a `decimal.Decimal`
(`Quantity`, `Price`, `Money` name what it holds). Floats never enter: the
edges call `to_decimal` on what they parse — JSON numbers (orjson gives a
float: its shortest repr is the text the sender wrote, for up to 17
significant digits), TOML values, ccxt answers — and it refuses what is not a
finite number.

An `Instrument` carries the venue's step, tick and minimums and decides
rounding: a quantity always down to the step; a limit buy's price down and a
limit sell's up to the tick (never a worse price than asked); a stop trigger
to the tick that does not move it closer to the market (a sell stop down, a
buy stop up).

Out of the engine a Decimal is written as the shortest JSON number that
equals it (`json_default` for orjson; never 0.30000000000000004), and
stored JSON is read back exactly (`loads_exact`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

import orjson

__all__ = [
    "ZERO",
    "Instrument",
    "Money",
    "Price",
    "Quantity",
    "json_default",
    "json_number",
    "loads_exact",
    "split_quantity",
    "to_decimal",
    "to_decimal_or_none",
]

Quantity = Decimal
Price = Decimal
Money = Decimal
ZERO = Decimal(0)


def to_decimal(value: Any, *, field: str = "value") -> Decimal:
    """`value` (Decimal, int, float, or a numeric string) as an exact Decimal.

    A float becomes the decimal of its shortest repr (`0.1` → `Decimal("0.1")`),
    which is what the JSON or TOML text said. Raises `ValueError` naming
    `field` for a bool, NaN, an infinity, or anything not a number.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{field}: must be a number")
    elif isinstance(value, int):
        return Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{field}: must be a finite number")
        return Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{field}: must be a number") from None
    else:
        raise ValueError(f"{field}: must be a number")
    if not result.is_finite():
        raise ValueError(f"{field}: must be a finite number")
    return result


def to_decimal_or_none(value: Any, *, field: str = "value") -> Decimal | None:
    return None if value is None else to_decimal(value, field=field)


def json_number(value: Decimal) -> str:
    """The shortest decimal text equal to `value`, without an exponent."""
    if not value:
        return "0"
    return format(value.normalize(), "f")


def json_default(obj: Any) -> Any:
    """orjson's `default`: a Decimal as an exact JSON number."""
    if isinstance(obj, Decimal):
        return orjson.Fragment(json_number(obj))
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def loads_exact(data: bytes | str) -> Any:
    """JSON with every non-integer number read as a Decimal (stored state:
    an average price of 28 digits comes back as it was written)."""
    return json.loads(data, parse_float=Decimal)


def _to_step(value: Decimal, step: Decimal | None, rounding: str) -> Decimal:
    if not step:
        return value
    return (value / step).to_integral_value(rounding=rounding) * step


@dataclass(frozen=True, slots=True)
class Instrument:
    """A symbol as a venue trades it: quantity step, price tick, minimum
    quantity and minimum notional (None: the venue has none)."""

    symbol: str
    qty_step: Decimal | None = None
    tick: Decimal | None = None
    min_qty: Decimal | None = None
    min_notional: Decimal | None = None

    def quantity(self, qty: Decimal) -> Decimal:
        """Down to the step: never more than was asked."""
        return _to_step(qty, self.qty_step, ROUND_FLOOR)

    def limit_price(self, price: Decimal, side: str) -> Decimal:
        """To the tick, never worse for the order: a buy down, a sell up."""
        return _to_step(price, self.tick, ROUND_FLOOR if side == "buy" else ROUND_CEILING)

    def stop_price(self, price: Decimal, side: str) -> Decimal:
        """A stop's trigger to the tick away from the market: a sell stop (below
        the market) down, a buy stop (above it) up."""
        return _to_step(price, self.tick, ROUND_FLOOR if side == "sell" else ROUND_CEILING)

    def too_small(self, qty: Decimal, price: Decimal | None) -> str:
        """Why `qty` (at `price`) is below the venue's minimums, or ""."""
        if qty <= 0:
            return f"quantity rounds to 0 at the step {self.qty_step}"
        if self.min_qty and qty < self.min_qty:
            return f"quantity {json_number(qty)} is below the minimum {json_number(self.min_qty)}"
        if self.min_notional and price and qty * price < self.min_notional:
            return (f"notional {json_number(qty * price)} is below the minimum "
                    f"{json_number(self.min_notional)}")
        return ""


def split_quantity(total: Decimal, parts: int, instrument: Instrument,
                   prices: list[Decimal | None] | None = None) -> list[tuple[int, Decimal]]:
    """`total` split into `parts` slices on the step, the remainder in the
    first, as (index of the part, quantity). A slice below the venue's
    minimums (at its price in `prices`) is merged into the previous one (a
    first one still too small, into the next), so fewer parts may come back;
    they always sum to `total`."""
    if parts <= 0:
        return []
    share = instrument.quantity(total / parts)
    slices = [total - share * (parts - 1)] + [share] * (parts - 1)

    def small(i: int, qty: Decimal) -> bool:
        return bool(instrument.too_small(qty, prices[i] if prices else None))

    merged: list[tuple[int, Decimal]] = []
    for i, qty in enumerate(slices):
        if merged and small(i, qty):
            merged[-1] = (merged[-1][0], merged[-1][1] + qty)
        else:
            merged.append((i, qty))
    if len(merged) > 1 and small(*merged[0]):
        merged[1] = (merged[1][0], merged[1][1] + merged[0][1])
        merged.pop(0)
    return merged
