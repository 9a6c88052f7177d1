"""Smart order routing, pure: which venue executes an order best, from each
venue's L2 book.

`route(side, quantity, books, fees_bps, now_ms, max_age_ms, max_slippage_bps)`
walks each venue's book for the quantity: the average price it would fill
at, then that price after the venue's taker fee (a buy costs price * (1 +
fee), a sell yields price * (1 - fee)). A book older than `max_age_ms` is
stale; one that cannot fill the whole quantity within `max_slippage_bps` of
its own best price is thin. The best of the rest wins (ties: the venue named
first). With none left the order is refused with a named rule:
`book_stale` when no venue has a fresh book, else `book_thin`.

`split(...)` (an order with `split: true`) takes the cheapest levels of every
fresh book together, fee included, within `max_slippage_bps` of the best of
them, until the quantity is filled: one leg per venue with the quantity it
takes there and the worst price it reaches (its limit).

Failure: `book_of` returns the reason a book message cannot be used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from titan_actors.domain.money import ZERO, to_decimal

__all__ = ["Book", "Leg", "Route", "RouteRefusal", "book_of", "route", "split", "walk"]

MAX_LEVELS = 50


@dataclass(frozen=True, slots=True)
class Book:
    venue: str
    symbol: str
    bids: tuple[tuple[Decimal, Decimal], ...]  # best first
    asks: tuple[tuple[Decimal, Decimal], ...]
    ts: int


@dataclass(frozen=True, slots=True)
class Route:
    venue: str
    price: Decimal  # the average the book would fill at
    cost: Decimal  # after the taker fee: what a buy pays (a sell receives) per unit


@dataclass(frozen=True, slots=True)
class Leg:
    venue: str
    quantity: Decimal
    limit: Decimal  # the worst price of the levels it takes


@dataclass(frozen=True, slots=True)
class RouteRefusal:
    rule: str
    reason: str


def _levels(raw: Any, descending: bool) -> tuple[tuple[Decimal, Decimal], ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("no levels")
    levels = []
    for level in raw[:MAX_LEVELS]:
        if not isinstance(level, list | tuple) or len(level) < 2:
            raise ValueError("a level is not [price, quantity]")
        price, qty = to_decimal(level[0], field="price"), to_decimal(level[1], field="quantity")
        if price <= 0 or qty < 0:
            raise ValueError("a level's price or quantity is out of range")
        levels.append((price, qty))
    return tuple(sorted(levels, key=lambda lv: lv[0], reverse=descending))


def book_of(venue: str, symbol: str, body: Mapping[str, Any], ts: int) -> Book | str:
    """A book message's levels (best first), or why it cannot be used."""
    try:
        bids, asks = _levels(body.get("bids"), True), _levels(body.get("asks"), False)
    except ValueError as exc:
        return str(exc)
    if bids[0][0] > asks[0][0]:
        return "crossed book"
    return Book(venue, symbol, bids, asks, ts)


def walk(book: Book, side: str, quantity: Decimal) -> tuple[Decimal, Decimal]:
    """(average price, quantity the book fills) of taking `quantity`."""
    left, notional = quantity, ZERO
    for price, qty in book.asks if side == "buy" else book.bids:
        take = min(left, qty)
        notional += take * price
        left -= take
        if not left:
            break
    filled = quantity - left
    return (notional / filled if filled else ZERO), filled


def route(side: str, quantity: Decimal, books: Mapping[str, Book], fees_bps: Mapping[str, Decimal], *,
          now_ms: int, max_age_ms: int, max_slippage_bps: Decimal) -> Route | RouteRefusal:
    fresh = {v: b for v, b in books.items() if now_ms - b.ts <= max_age_ms}
    if not fresh:
        known = ", ".join(f"{v} {now_ms - b.ts} ms old" for v, b in books.items()) or "none seen"
        return RouteRefusal("book_stale", f"no venue has a book fresher than {max_age_ms} ms ({known})")
    candidates: list[Route] = []
    thin: list[str] = []
    for venue, book in fresh.items():
        price, filled = walk(book, side, quantity)
        best = (book.asks if side == "buy" else book.bids)[0][0]
        slipped = (price - best if side == "buy" else best - price) / best * 10_000 if filled else ZERO
        if filled < quantity or slipped > max_slippage_bps:
            thin.append(f"{venue} fills {filled} within {max_slippage_bps} bps" if filled < quantity
                        else f"{venue} slips {slipped:.2f} bps")
            continue
        fee = fees_bps.get(venue, ZERO) / 10_000
        candidates.append(Route(venue, price, price * (1 + fee) if side == "buy" else price * (1 - fee)))
    if not candidates:
        return RouteRefusal("book_thin", f"no book fills {quantity} within {max_slippage_bps} bps: "
                                         + "; ".join(thin))
    return min(candidates, key=lambda r: r.cost) if side == "buy" else max(candidates, key=lambda r: r.cost)


def split(side: str, quantity: Decimal, books: Mapping[str, Book], fees_bps: Mapping[str, Decimal], *,
          now_ms: int, max_age_ms: int, max_slippage_bps: Decimal) -> list[Leg] | RouteRefusal:
    """The quantity over every fresh book's best levels (fee included), best first."""
    fresh = {v: b for v, b in books.items() if now_ms - b.ts <= max_age_ms}
    if not fresh:
        return RouteRefusal("book_stale", f"no venue has a book fresher than {max_age_ms} ms")
    levels = []
    for venue, book in fresh.items():
        fee = fees_bps.get(venue, ZERO) / 10_000
        for price, qty in book.asks if side == "buy" else book.bids:
            levels.append((price * (1 + fee) if side == "buy" else price * (1 - fee), venue, price, qty))
    levels.sort(key=lambda lv: lv[0], reverse=side != "buy")
    best = levels[0][0]
    taken: dict[str, list[Decimal]] = {}
    left = quantity
    for effective, venue, price, qty in levels:
        slipped = (effective - best if side == "buy" else best - effective) / best * 10_000
        if slipped > max_slippage_bps or not left:
            break
        take = min(left, qty)
        leg = taken.setdefault(venue, [ZERO, price])
        leg[0] += take
        leg[1] = max(leg[1], price) if side == "buy" else min(leg[1], price)
        left -= take
    if left:
        return RouteRefusal("book_thin", f"the books together fill {quantity - left} of {quantity} within "
                                         f"{max_slippage_bps} bps")
    return [Leg(venue, qty, limit) for venue, (qty, limit) in taken.items() if qty]
