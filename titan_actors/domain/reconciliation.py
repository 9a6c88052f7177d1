"""Reconciliation, pure: what comparing the shadow state with the venue's
own figures concludes.

Orders: one open at the venue that the shadow does not have (and did not
see end) is adopted; one open in the shadow that the venue no longer has
is closed at the venue. Position: a difference beyond the tolerance is
drift, reported once while it stays the same, and under policy `adopt`
the venue's quantity (and its entry price, when it gives one) becomes the
shadow's; under `halt` the symbol is to be halted. On a spot venue the
wallet's balance is every coin of the asset: the coins it held apart from
the engine's trades (`wallet_base`, fixed at the first comparison) are
taken off before comparing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from titan_actors.domain.positions import Position

__all__ = ["Reconciliation", "reconcile"]


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
    drift_key: tuple[Decimal, Decimal] | None = None


def reconcile(*, venue: str, position: Position, shadow_open: Mapping[str, dict[str, Any]],
              ended: frozenset[str] | set[str], venue_qty: Decimal, venue_avg: Decimal | None,
              venue_open: Mapping[str, dict[str, Any]], policy: str, tolerance: Decimal, spot: bool,
              wallet_base: Decimal | None, reported: tuple[Decimal, Decimal] | None) -> Reconciliation:
    """Compare one venue's figures for a symbol with the shadow's. `ended`:
    client order ids the shadow saw reach a final status; `reported`: the
    drift reported last time, if it is still the same."""
    corrections: list[tuple[str, dict[str, Any]]] = []
    adopted = {coid: dict(order) for coid, order in venue_open.items()
               if coid not in shadow_open and coid not in ended}
    closed = {coid: dict(order) for coid, order in shadow_open.items() if coid not in venue_open}
    corrections += [("OrderAdopted", {"venue": venue, "client_order_id": c, **o}) for c, o in adopted.items()]
    corrections += [("OrderClosedAtVenue", {"venue": venue, "client_order_id": c, **o})
                    for c, o in closed.items()]
    wallet_qty = venue_qty
    if spot:
        wallet_base = wallet_base if wallet_base is not None else venue_qty - position.qty
        venue_qty = venue_qty - wallet_base  # the engine's own coins in the wallet
    if abs(position.qty - venue_qty) <= tolerance:
        return Reconciliation("ok", position, wallet_base, corrections, adopted, closed)
    key = (position.qty, venue_qty)
    drift = {"venue": venue, "shadow_qty": position.qty, "venue_qty": venue_qty,
             "diff": venue_qty - position.qty, "shadow_avg_entry": position.avg_entry,
             "venue_avg_price": venue_avg, "policy": policy}
    if spot:
        drift["wallet_qty"], drift["wallet_base"] = wallet_qty, wallet_base
    result = f"drift ({policy})"
    if reported == key:  # reported already while it stays the same (a halted symbol keeps drifting)
        return Reconciliation(result, position, wallet_base, corrections, adopted, closed, drift_key=key)
    corrections.append(("PositionDrift", drift))
    halt = ""
    if policy == "adopt":
        # A spot wallet has no entry price: the engine's own stays.
        avg = venue_avg if venue_avg is not None else position.avg_entry
        position = replace(position, qty=venue_qty, avg_entry=avg)
    else:
        halt = (f"reconciliation: position drift on {venue} "
                f"({drift['shadow_qty']:g} here, {drift['venue_qty']:g} there)")
    return Reconciliation(result, position, wallet_base, corrections, adopted, closed, halt, key)
