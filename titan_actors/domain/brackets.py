"""Bracket exits, pure: which reduce-only orders a filled entry calls for.

A filled entry with a `stop_loss` gets one stop for its whole filled
quantity; with `take_profits` it gets limit orders splitting that quantity
evenly on the venue's step (the remainder in the first, nearest target). Every leg is
normalised like an entry: quantity down to the step, a take-profit's price
to the tick on the side that is never worse for it, a stop's trigger to the
tick away from the market. A take-profit slice below the venue's minimum
quantity or notional is merged into the previous slice (the first into the
next), so a small position gets fewer, larger take-profits; a leg that is
still too small is not placed and its reason is returned instead.

Exits follow what actually filled (`fit_exits`): placed on the entry's first
fill and resized as more of it fills; a take-profit fill shrinks the stop
(one-cancels-other, in part). A leg the venue cannot change in place is
replaced by a new order (its next version) and the old one canceled once
the new one is at the venue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from titan_actors.domain.ids import exit_order_id
from titan_actors.domain.money import ZERO, Instrument, split_quantity
from titan_actors.domain.orders import FINAL_STATUSES, Order

__all__ = ["ExitPlan", "exit_orders", "fit_exits", "stop_quantity"]


def stop_quantity(entry: Order, take_profits: list[Order]) -> Decimal:
    """What the stop must still cover: the entry's fill less what the
    take-profits took (one-cancels-other, in part)."""
    return max(entry.filled_qty - sum((tp.filled_qty for tp in take_profits), ZERO), ZERO)


def exit_orders(entry: Order, instrument: Instrument, now_ms: int) -> tuple[list[Order], list[str]]:
    """The exits of `entry` (by its filled quantity), and why any leg was left out."""
    if (entry.stop_loss is None and not entry.take_profits) or entry.filled_qty <= 0:
        return [], []
    side = "sell" if entry.side == "buy" else "buy"
    qty = instrument.quantity(entry.filled_qty)
    base = replace(entry, side=side, reduce_only=True, time_in_force="GTC", stop_loss=None,
                   take_profits=(), stage="CONFIRMED", status="SUBMITTED", order_id="", filled_qty=ZERO,
                   avg_price=ZERO, fees=ZERO, fills=(), reason="", confirmed_at=now_ms, updated_at=now_ms)
    exits: list[Order] = []
    problems: list[str] = []
    if entry.stop_loss is not None:
        trigger = instrument.stop_price(entry.stop_loss, side)
        problem = instrument.too_small(qty, trigger)
        if problem:
            problems.append(f"sl: {problem}")
        else:
            exits.append(replace(base, client_order_id=exit_order_id(entry.signal_id, "sl"), leg="sl",
                                 order_type="stop", price=None, trigger_price=trigger, quantity=qty))
    prices = [instrument.limit_price(p, side) for p in entry.take_profits]
    for i, slice_qty in split_quantity(qty, len(prices), instrument, list(prices)):
        leg = f"tp{i + 1}"
        problem = instrument.too_small(slice_qty, prices[i])
        if problem:
            problems.append(f"{leg}: {problem}")
            continue
        exits.append(replace(base, client_order_id=exit_order_id(entry.signal_id, leg), leg=leg,
                             order_type="limit", price=prices[i], trigger_price=None, quantity=slice_qty))
    return exits, problems


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """What to do to a bracket's exits now: legs to place (new ones, and new
    versions replacing legs the venue cannot amend), legs to resize in place
    (to the quantity given), replaced legs to cancel (once their successor
    is at the venue), and why a leg cannot be placed; `complete`: nothing is
    left to do — the entry has ended and its legs fit it, or every leg has
    ended."""

    place: list[Order] = field(default_factory=list)
    resize: list[tuple[Order, Decimal]] = field(default_factory=list)
    cancel: list[Order] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    complete: bool = False


def _settled(order: Order) -> bool:
    """Acknowledged by the venue and still working."""
    return order.status not in FINAL_STATUSES and order.status not in ("", "SUBMITTED")


def fit_exits(entry: Order, existing: Sequence[Order], instrument: Instrument, now_ms: int, *,
              amends: Callable[[Order], bool]) -> ExitPlan:
    """The exits `entry` calls for by what has filled, against every
    journaled version of its exits (`existing`). A leg is resized in place
    where `amends(leg)` says the venue can; elsewhere it is replaced by its
    next version, and the old one is canceled once the new one is at the
    venue (a stop is never missing meanwhile; both are reduce-only). What an
    older version filled counts for its leg. A leg not yet acknowledged by
    the venue is left as it is (the next change fits it); once a leg's
    newest version has ended the bracket is closing and no new leg is
    placed."""
    targets, problems = exit_orders(entry, instrument, now_ms)
    ended = entry.status in FINAL_STATUSES
    newest: dict[str, Order] = {}
    for order in existing:
        if order.leg not in newest or order.version > newest[order.leg].version:
            newest[order.leg] = order
    closing = any(o.status in FINAL_STATUSES for o in newest.values())
    take_profits = [o for o in existing if o.leg.startswith("tp")]
    plan = ExitPlan(problems=problems if ended else [])
    for target in targets:
        leg = newest.get(target.leg)
        if leg is None:
            if not closing:
                plan.place.append(target)
            continue
        if not _settled(leg):
            continue
        before = sum((o.filled_qty for o in existing if o.leg == leg.leg and o.version < leg.version), ZERO)
        cover = stop_quantity(entry, take_profits) if leg.leg == "sl" else target.quantity
        want = max(cover - before, leg.filled_qty)
        if want <= 0 or want == leg.quantity:
            continue
        if amends(leg):
            plan.resize.append((leg, want))
        elif not closing and want - leg.filled_qty > 0:  # what it filled counts, the rest moves on
            version = leg.version + 1
            coid = exit_order_id(entry.signal_id, leg.leg, version)
            plan.place.append(replace(target, client_order_id=coid, version=version,
                                      quantity=want - leg.filled_qty))
    for order in existing:
        successor = newest[order.leg]
        if order is not successor and order.status not in FINAL_STATUSES and _settled(successor):
            plan.cancel.append(order)
    over = bool(newest) and all(o.status in FINAL_STATUSES for o in newest.values())
    idle = not (plan.place or plan.resize or plan.cancel)
    return replace(plan, complete=over or (ended and idle))
