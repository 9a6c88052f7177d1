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
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from titan_actors.domain.ids import exit_order_id
from titan_actors.domain.money import ZERO, Instrument, split_quantity
from titan_actors.domain.orders import Order

__all__ = ["exit_orders", "stop_quantity"]


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
