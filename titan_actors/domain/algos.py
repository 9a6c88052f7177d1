"""Execution algorithms: what a parent order's schedule is, pure.

A PREPARE may carry `algo` (`ALGO`, checked by `parse_algo`):

- `TWAP`: the parent quantity in `slices` child orders (or one per
  `interval_s`) spread evenly over `duration_s`, the first at once; the
  quantity split on the venue's step, the remainder on the first slice, a
  slice below the venue's minimum merged into the one before. With
  `randomize_pct`, each slice's time moves by up to that share of the
  interval and its size by up to that share of a slice (the sizes still sum
  to the parent exactly), drawn from the parent's signal id so a restart
  draws the same. Children are market orders, or limit IOC at
  `limit_price` when it is given.
- `VWAP`: TWAP's times, slice sizes in proportion to a volume profile (the
  order's `profile`, a weight per slice, else `[algos] vwap_profile`: 24
  weights by UTC hour).
- `CHASE`: one post-only limit child at the best bid (buy) or ask (sell)
  for what is left; when the market moves more than `chase_ticks` ticks away it is
  canceled and posted again at the new best, at most `max_chases` times and
  never beyond `price_cap` (else the order's limit price); then, with
  `cross`, the rest goes as a market order, else the parent ends.
- `ICEBERG`: a limit parent shown `display_quantity` at a time: one resting
  child at the parent's price; when it is done (filled, or canceled at the
  venue) the next shows what is left, up to `display_quantity`.

Child signal ids are `<parent signal id>.<n>` (n from 1): the adapter's
journal keys each child by it, so a child re-driven after a crash is never a
second order.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from titan_actors.domain.money import ZERO, Instrument, split_quantity, to_decimal
from titan_actors.domain.schema import Field, Model

__all__ = [
    "ALGO",
    "Slice",
    "beyond_cap",
    "chase_price",
    "child_signal",
    "iceberg_next",
    "moved_away",
    "parse_algo",
    "participation",
    "twap_schedule",
    "vwap_schedule",
]

ALGO_TYPES = ("TWAP", "VWAP", "ICEBERG", "CHASE")  # and SPLIT, made by smart routing (`split: true`)
MAX_SLICES = 1000

ALGO = Model("Algo", "An execution algorithm for the order (the parent): TWAP and VWAP need duration_s and "
             "slices or interval_s; ICEBERG needs display_quantity and a limit order; CHASE posts at the "
             "best bid (ask) and follows it.", (
    Field("type", "string", "TWAP or ICEBERG", required=True, enum=ALGO_TYPES),
    Field("duration_s", "number", "TWAP: the schedule's length", positive=True, maximum=86_400),
    Field("slices", "integer", "TWAP: how many child orders", minimum=1, maximum=MAX_SLICES),
    Field("interval_s", "number", "TWAP: one child every this many seconds (instead of slices)",
          positive=True, maximum=86_400),
    Field("limit_price", "number", "TWAP: children are limit IOC at this price (else market)",
          positive=True, maximum=Decimal("1e12")),
    Field("randomize_pct", "number", "TWAP: jitter of each slice's time and size, in % of one",
          minimum=0, maximum=50),
    Field("display_quantity", "number", "ICEBERG: the quantity shown at a time", positive=True,
          maximum=Decimal("1e9")),
    Field("max_participation_pct", "number", "VWAP: a slice is at most this % of the volume traded since "
          "the slice before (the ticker's volume); what it could not send carries to the next",
          positive=True, maximum=100),
    Field("profile", "numbers", "VWAP: one volume weight per slice (else [algos] vwap_profile by UTC hour)",
          minimum=0, max_items=MAX_SLICES),
    Field("chase_ticks", "integer", "CHASE: re-price when the market moves this many ticks away (default 1)",
          minimum=1, maximum=10_000),
    Field("max_chases", "integer", "CHASE: at most this many re-prices (default 10)", minimum=0,
          maximum=1000),
    Field("price_cap", "number", "CHASE: never post beyond this price (else the order's limit price)",
          positive=True, maximum=Decimal("1e12")),
    Field("cross", "boolean", "CHASE: once out of chases (or at the cap), take the rest at the market"),
))


@dataclass(frozen=True, slots=True)
class Slice:
    n: int  # 1-based: the child's signal id is `<parent>.<n>`
    due_ms: int
    quantity: Decimal


def child_signal(parent: str, n: int) -> str:
    return f"{parent}.{n}"


def parse_algo(raw: Any, *, order_type: str, quantity: Decimal) -> dict[str, Any] | str:
    """The checked `algo` object (numbers exact), or the `INVALID` reason."""
    if not isinstance(raw, dict):
        return "algo: must be a JSON object"
    problem = ALGO.problem(raw)
    if problem is not None:
        return f"algo.{problem}"
    spec: dict[str, Any] = {k: to_decimal(v) if isinstance(v, float) else v for k, v in raw.items()}
    if spec["type"] in ("TWAP", "VWAP"):
        if "duration_s" not in spec or ("slices" in spec) == ("interval_s" in spec):
            return f"algo: {spec['type']} needs duration_s and one of slices or interval_s"
        slices = spec.get("slices") or int(Decimal(spec["duration_s"]) / Decimal(spec["interval_s"])) or 1
        if slices > MAX_SLICES:
            return f"algo: {spec['type']} of more than {MAX_SLICES} slices"
        if "profile" in spec and (len(spec["profile"]) != slices or not any(spec["profile"])):
            return "algo.profile: one weight per slice, not all zero"
    elif spec["type"] == "CHASE":
        pass  # every field has a default; an order's limit price caps it when price_cap does not
    else:
        if order_type != "limit":
            return "algo: ICEBERG needs a limit order (its price is every child's)"
        if "display_quantity" not in spec:
            return "algo.display_quantity: missing"
        if Decimal(spec["display_quantity"]) >= quantity:
            return "algo.display_quantity: must be less than the quantity"
    return spec


def _rng(signal_id: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(signal_id.encode()).digest()[:8], "big"))


def _draw(rng: random.Random) -> Decimal:
    """A draw in [-1, 1], exact from here on."""
    return Decimal(repr(rng.uniform(-1, 1)))


def twap_schedule(signal_id: str, total: Decimal, spec: Mapping[str, Any], start_ms: int,
                  instrument: Instrument) -> list[Slice]:
    """The TWAP's child orders: (n, when, how much), summing to `total` exactly."""
    duration_ms = int(Decimal(spec["duration_s"]) * 1000)
    count = int(spec.get("slices") or int(Decimal(spec["duration_s"]) / Decimal(spec["interval_s"])) or 1)
    step_ms = duration_ms // count
    jitter = Decimal(spec.get("randomize_pct", 0)) / 100
    rng = _rng(signal_id)
    shares = split_quantity(total, count, instrument)
    quantities = [qty for _i, qty in shares]
    if jitter and len(quantities) > 1:
        base = total / len(quantities)
        moved = [instrument.quantity(base * jitter * _draw(rng)) for _ in quantities[1:]]
        quantities = [quantities[0] - sum(moved, ZERO), *(q + m for q, m in zip(quantities[1:], moved,
                                                                                   strict=True))]
        if min(quantities) <= 0:
            quantities = [qty for _i, qty in shares]  # too coarse a step to move: even slices
    slices = []
    for k, ((i, _even), qty) in enumerate(zip(shares, quantities, strict=True)):
        offset = i * step_ms
        if jitter and k:
            offset += int(step_ms * jitter * _draw(rng))
        slices.append(Slice(k + 1, start_ms + max(0, min(offset, duration_ms)), qty))
    return slices


def vwap_schedule(signal_id: str, total: Decimal, spec: Mapping[str, Any], start_ms: int,
                  instrument: Instrument, hourly: list[Decimal]) -> list[Slice]:
    """The VWAP's child orders: TWAP's times, sizes in proportion to the
    volume profile — `spec["profile"]` (a weight per slice), else `hourly`
    (24 weights, by the UTC hour each slice is due) — on the step, the
    remainder on the first; a slice below the venue's minimum is merged
    into the one before."""
    even = twap_schedule(signal_id, total, {k: v for k, v in spec.items() if k != "randomize_pct"},
                         start_ms, instrument)
    if "profile" in spec:
        weights = [Decimal(str(w)) for w in spec["profile"]][:len(even)]
    else:
        weights = [hourly[(s.due_ms // 3_600_000) % 24] for s in even]
    if not any(weights):
        weights = [Decimal(1)] * len(even)
    scale = sum(weights)
    sizes = [instrument.quantity(total * w / scale) for w in weights]
    sizes[0] += total - sum(sizes, ZERO)
    slices: list[Slice] = []
    for piece, qty in zip(even, sizes, strict=True):
        if slices and (not qty or instrument.too_small(qty, None)):
            slices[-1] = Slice(slices[-1].n, slices[-1].due_ms, slices[-1].quantity + qty)
        elif qty:
            slices.append(Slice(len(slices) + 1, piece.due_ms, qty))
    return slices


def participation(scheduled: Decimal, carried: Decimal, traded: Decimal | None, pct: Decimal | None,
                  instrument: Instrument) -> tuple[Decimal, Decimal]:
    """A VWAP slice under its participation cap: (what to send, what carries
    on). Without a cap, or without volume data, the slice and what was
    carried go out whole."""
    wanted = scheduled + carried
    if pct is None or traded is None:
        return wanted, ZERO
    allowed = instrument.quantity(max(traded, ZERO) * pct / 100)
    send = min(wanted, allowed)
    return send, wanted - send


def chase_price(side: str, bid: Decimal, ask: Decimal) -> Decimal:
    """Where a chasing child posts: the best bid for a buy, the best ask for a sell."""
    return bid if side == "buy" else ask


def moved_away(side: str, posted: Decimal, bid: Decimal, ask: Decimal, ticks: int, tick: Decimal) -> bool:
    """The market left the posted price by more than `ticks` ticks (a buy's
    bid rose above it, a sell's ask fell below it)."""
    gap = bid - posted if side == "buy" else posted - ask
    return gap > ticks * tick


def beyond_cap(side: str, price: Decimal, cap: Decimal | None) -> bool:
    return cap is not None and (price > cap if side == "buy" else price < cap)


def iceberg_next(total: Decimal, display: Decimal, done: Decimal, instrument: Instrument) -> Decimal:
    """The next child's quantity once `done` of `total` is filled: what is
    left, at most `display` (on the step); 0 when nothing is left."""
    left = total - done
    if left <= 0:
        return ZERO
    return min(instrument.quantity(display), left) if instrument.quantity(display) > 0 else left
