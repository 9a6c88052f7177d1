"""Reconciliation, pure: what comparing the shadow state with the venue's
own figures concludes.

The comparison is made at a consistent cut, so that it can always be made,
also while orders keep filling. The venue's position counts every trade it
executed before it was read; the shadow counts the fills the position actor
applied. Between the two are the fills on their way (`FillInFlight`): ones
the adapter knew before it asked (the venue's figure counts them, the
shadow may not yet) and ones it learned while asking (the venue's figure
may or may not count them; in the venue's history they come in time order,
so it counts a prefix of them). The shadow is corrected by those fills to
each possible cut; the venue's figure is explained when one of them matches
within the tolerance. What no cut explains is drift — a trade made outside
the engine — never a fill merely in flight. When several cuts are possible
the drift's size is only a guess (the nearest cut): the caller may ask
again first ("unsure"), so that an adopted position is exact.

Orders: one open at the venue that the shadow does not have (and did not
see end) is adopted; one open in the shadow that the venue no longer has
is closed at the venue; an order with an update on its way is left for
the next comparison. Position: drift is reported once while it stays the
same, and under policy `adopt` the shadow takes the difference no cut
explains (and the venue's entry price, when it gives one); under `halt`
the symbol is to be halted. On a spot venue the wallet's balance is every
coin of the asset: the coins it held apart from the engine's trades
(`wallet_base`, fixed at the first comparison) are taken off before
comparing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from titan_actors.domain.money import ZERO
from titan_actors.domain.positions import Position

__all__ = ["FillInFlight", "Reconciliation", "cuts", "reconcile"]


@dataclass(frozen=True, slots=True)
class FillInFlight:
    """A fill of ours that the shadow may not have applied yet. `qty` is
    signed (a sell is negative); `ts` is the venue's time of the trade;
    `counted`: known before the venue's figures were asked for, so they
    count it (otherwise they may or may not)."""

    trade_id: str
    qty: Decimal
    ts: int
    counted: bool


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """`result` is "ok" or "drift (<policy>)"; `corrections` are the events
    (OrderAdopted, OrderClosedAtVenue, PositionDrift) in order; `adopted` and
    `closed` the orders to add to or drop from the shadow; `position` the
    shadow position after it; `halt` says the symbol must be halted;
    `drift_key` what to remember so that the same drift is reported once."""

    result: str
    position: Position
    wallet_base: Decimal | None
    corrections: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    adopted: dict[str, dict[str, Any]] = field(default_factory=dict)
    closed: dict[str, dict[str, Any]] = field(default_factory=dict)
    halt: str = ""
    drift_key: Decimal | None = None


def cuts(shadow_qty: Decimal, in_flight: Sequence[FillInFlight], applied: Collection[str]) -> list[Decimal]:
    """The venue quantities that the shadow and the fills in flight explain,
    one per possible cut, oldest first. `applied`: the trade ids among
    `in_flight` the shadow has applied."""
    counted = sum((f.qty for f in in_flight if f.counted and f.trade_id not in applied), ZERO)
    maybe = sorted((f for f in in_flight if not f.counted), key=lambda f: (f.ts, f.trade_id))
    cut = shadow_qty + counted - sum((f.qty for f in maybe if f.trade_id in applied), ZERO)
    found = [cut]
    for fill in maybe:
        cut += fill.qty
        found.append(cut)
    return found


def _nearest(candidates: list[Decimal], venue_qty: Decimal) -> Decimal:
    return min(candidates, key=lambda c: abs(venue_qty - c))  # the oldest of equals


def reconcile(*, venue: str, position: Position, shadow_open: Mapping[str, dict[str, Any]],
              ended: Collection[str], venue_qty: Decimal, venue_avg: Decimal | None,
              venue_open: Mapping[str, dict[str, Any]], policy: str, tolerance: Decimal, spot: bool,
              wallet_base: Decimal | None, reported: Decimal | None,
              in_flight: Sequence[FillInFlight] = (), applied: Collection[str] = frozenset(),
              orders_in_flight: Collection[str] = frozenset(), settle: bool = True) -> Reconciliation:
    """Compare one venue's figures for a symbol with the shadow's. `ended`:
    client order ids the shadow saw reach a final status; `reported`: the
    drift reported last time, if it is still the same; `in_flight`,
    `applied`: see `cuts`; `orders_in_flight`: client order ids with an
    update on its way (not compared this time). When no cut explains the
    venue's figure but several cuts are possible, the size of the drift is
    a guess: with `settle` False the result is "unsure" (nothing changes;
    ask again), with `settle` True the nearest cut is taken."""
    corrections: list[tuple[str, dict[str, Any]]] = []
    adopted = {coid: dict(order) for coid, order in venue_open.items()
               if coid not in shadow_open and coid not in ended and coid not in orders_in_flight}
    closed = {coid: dict(order) for coid, order in shadow_open.items()
              if coid not in venue_open and coid not in orders_in_flight}
    corrections += [("OrderAdopted", {"venue": venue, "client_order_id": c, **o}) for c, o in adopted.items()]
    corrections += [("OrderClosedAtVenue", {"venue": venue, "client_order_id": c, **o})
                    for c, o in closed.items()]
    wallet_qty = venue_qty
    candidates = cuts(position.qty, in_flight, applied)
    if spot:
        wallet_base = wallet_base if wallet_base is not None else venue_qty - _nearest(candidates, venue_qty)
        venue_qty = venue_qty - wallet_base  # the engine's own coins in the wallet
    expected = _nearest(candidates, venue_qty)
    diff = venue_qty - expected
    if abs(diff) <= tolerance:
        return Reconciliation("ok", position, wallet_base, corrections, adopted, closed)
    if not settle and len(set(candidates)) > 1:
        return Reconciliation("unsure", position, wallet_base)
    drift = {"venue": venue, "shadow_qty": position.qty, "venue_qty": venue_qty, "diff": diff,
             "in_flight": expected - position.qty, "shadow_avg_entry": position.avg_entry,
             "venue_avg_price": venue_avg, "policy": policy}
    if spot:
        drift["wallet_qty"], drift["wallet_base"] = wallet_qty, wallet_base
    result = f"drift ({policy})"
    if reported == diff:  # reported already while it stays the same (a halted symbol keeps drifting)
        return Reconciliation(result, position, wallet_base, corrections, adopted, closed, drift_key=diff)
    corrections.append(("PositionDrift", drift))
    halt = ""
    if policy == "adopt":
        # A spot wallet has no entry price: the engine's own stays.
        avg = venue_avg if venue_avg is not None else position.avg_entry
        position = replace(position, qty=position.qty + diff, avg_entry=avg)
    else:
        halt = (f"reconciliation: position drift on {venue} "
                f"({position.qty:g} here, {venue_qty:g} there, {drift['in_flight']:g} on its way)")
    return Reconciliation(result, position, wallet_base, corrections, adopted, closed, halt, diff)
