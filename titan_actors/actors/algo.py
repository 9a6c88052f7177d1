"""The algo actor: one per running parent order (`algo:<signal id>`),
started by the venue adapter when the parent is confirmed, supervised by
`algos` (transient: restarted after a crash, not once its schedule is over).

It sends the parent's children (`domain.algos`) through the normal path —
`CheckOrder` to the risk guard (each child checked again), which stages it
at the adapter, then `SubmitOrder` — and learns how they and the parent
stand by asking the adapter (`AlgoStatusRequest`) every `_TICK_S`.

Its store (`<data>/algos/<signal id>`) holds the schedule and, per child,
what it last did. A child's signal id is `<parent>.<n>` and the adapter
journals it under the client order id derived from it, so a child sent again
after a crash (its PREPARE, its CONFIRM) finds the order it made before:
never a second one.

- TWAP: each slice when it is due; the parent ends when every slice is
  sent and every child is final (FILLED when they filled it all, else
  EXPIRED naming how much did).
- ICEBERG: one child at a time; the next once the one before is final.

A refused child (risk, halt, venue) is not sent again: the parent ends with
less filled. When the parent is final (filled, or canceled by its signal's
CANCEL, a kill switch or an operator), the actor stops and exits.

Failure: a handler that raises crashes the actor; it is restarted from its
store and re-drives what was in flight.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson

from titan_actors.domain.algos import (
    Slice,
    beyond_cap,
    chase_price,
    child_signal,
    iceberg_next,
    moved_away,
    participation,
    twap_schedule,
    vwap_schedule,
)
from titan_actors.domain.money import ZERO, Instrument, json_default, loads_exact, to_decimal_or_none
from titan_actors.domain.orders import Order, combined
from titan_actors.domain.signals import OrderIntent
from titan_actors.messages import (
    AlgoDone,
    AlgoProgress,
    AlgoStatus,
    AlgoStatusRequest,
    CancelOrder,
    CheckOrder,
    CommandRefused,
    OrderAccepted,
    OrderCanceled,
    OrderPrepared,
    SubmitOrder,
)
from titan_actors.runtime.actor import TitanActor
from titan_actors.runtime.clock import now_ms

__all__ = ["AlgoActor"]

log = logging.getLogger(__name__)

_TICK = "algo:tick"
_TICK_S = 0.1
#: A child asked about (checked or confirmed) with no answer for this long is asked again.
_RETRY_S = 2.0


class AlgoActor(TitanActor):
    needs = ("risk", "venue:")

    def on_start(self) -> None:
        self.order = Order.from_json(self.config["parent"].encode())
        self.venue = str(self.config["venue"])
        self.instrument = Instrument(self.order.symbol, **{
            k: to_decimal_or_none(v) for k, v in self.config.get("instrument", {}).items()})
        self.store = self.open_store(f"algos/{self.order.signal_id}")
        raw = self.store.get(b"schedule")
        if raw is None:
            self.schedule = self._plan()
            self.store.put(b"schedule", orjson.dumps([[s.n, s.due_ms, s.quantity] for s in self.schedule],
                                                     default=json_default))
        else:
            self.schedule = [Slice(int(n), int(due), Decimal(str(q))) for n, due, q in loads_exact(raw)]
        # n → {"qty", "type", "price", "tif", ("venue"), "at": monotonic, "state": checking | prepared |
        # accepted | canceling (a chase) | refused | skipped (a VWAP slice with no volume to take part in)}
        self.children: dict[int, dict[str, Any]] = {
            int(k[2:]): loads_exact(v) for k, v in self.store.items(b"c:")}
        for child in self.children.values():
            child["at"] = 0.0  # in flight before the restart: asked again now
            child["qty"] = Decimal(str(child["qty"]))
            if child["state"] == "canceling":
                child["state"] = "accepted"  # its cancel may be lost: asked again if still away
        self.finished = False
        self.elsewhere: dict[str, dict[int, dict[str, Any]]] = {}  # venue → its children's state (SPLIT)
        self.progress: tuple[Decimal, Decimal, Decimal] | None = None  # last sent to the parent (SPLIT)
        self.after(0.0, _TICK)

    def status_detail(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for child in self.children.values():
            states[child["state"]] = states.get(child["state"], 0) + 1
        return {"parent": self.order.signal_id, "algo": (self.order.algo or {}).get("type"),
                "slices": len(self.schedule), "children": states, "finished": self.finished}

    def _plan(self) -> list[Slice]:
        algo = self.order.algo or {}
        start = self.order.confirmed_at or now_ms()
        if algo.get("type") == "TWAP":
            return twap_schedule(self.order.signal_id, self.order.quantity, algo, start, self.instrument)
        if algo.get("type") == "VWAP":
            hourly = [Decimal(str(w)) for w in self.config.get("vwap_profile") or [1] * 24]
            return vwap_schedule(self.order.signal_id, self.order.quantity, algo, start, self.instrument,
                                 hourly)
        return []  # ICEBERG, CHASE: decided child by child

    # --- the loop -----------------------------------------------------------------------

    def on_wakeup(self, payload: Any) -> None:
        if payload != _TICK or self.finished:
            return
        for venue in [v for v in {f"venue:{leg[0]}" for leg in self._legs()} if v != self.venue]:
            self.tell(venue, AlgoStatusRequest(self.order.signal_id))  # a SPLIT's other venues
        if not self.tell(self.venue, AlgoStatusRequest(self.order.signal_id)):
            log.warning("algo %s: %s is not reachable yet", self.order.signal_id, self.venue)
        self.after(_TICK_S, _TICK)

    def _legs(self) -> list[Any]:
        return list((self.order.algo or {}).get("legs") or ())

    def handle(self, msg: Any, sender: Any) -> None:
        match msg:
            case AlgoStatus() if f"venue:{msg.venue}" != self.venue:
                self.elsewhere[msg.venue] = msg.children  # a SPLIT's children at another venue
            case AlgoStatus():
                self._on_status(msg)
            case OrderPrepared():
                n = self._child_step(msg.signal_id, "prepared")
                if n is not None:
                    self.tell(self._venue_of(n), SubmitOrder(msg.signal_id, self.role))
            case OrderAccepted():
                self._child_step(msg.signal_id, "accepted")
            case OrderCanceled() | CommandRefused(command="CANCEL"):
                pass  # a chase's cancel: the next status says how the child ended
            case CommandRefused() if msg.code in ("BUSY", "INTERNAL"):
                self._child_step(msg.signal_id, "retry")  # nothing was done: the next tick asks again
            case CommandRefused():
                log.warning("algo %s: child %s refused (%s): %s", self.order.signal_id, msg.signal_id,
                            msg.code, msg.reason)
                self._child_step(msg.signal_id, "refused")
            case _:
                super().handle(msg, sender)

    def _on_status(self, status: AlgoStatus) -> None:
        if status.final:
            self._finish(f"the parent is {status.status or 'gone'}")
            return
        if self._legs():
            status = replace(status, children={**status.children, **{
                n: c for children in self.elsewhere.values() for n, c in children.items()}})
        for n, child in self.children.items():  # what the journal says over what we remember
            known = status.children.get(n)
            if known is not None and known["stage"] == "CONFIRMED" and child["state"] not in (
                    "refused", "canceling"):
                child["state"] = "accepted"
        self._redrive()
        kind = (self.order.algo or {}).get("type")
        done = {"TWAP": self._scheduled, "VWAP": self._scheduled, "ICEBERG": self._iceberg,
                "CHASE": self._chase, "SPLIT": self._split}[kind](status)
        if done:
            filled = status.filled_qty if kind != "SPLIT" else (self.progress or (ZERO,))[0]
            if filled >= self.order.quantity:
                self.tell(self.venue, AlgoDone(self.order.signal_id, "FILLED", "every child filled"))
            else:
                why = f"{kind} ended with {filled} of {self.order.quantity} filled"
                self.tell(self.venue, AlgoDone(self.order.signal_id, "EXPIRED", why))

    def _scheduled(self, status: AlgoStatus) -> bool:
        """TWAP, VWAP: each slice when due (a VWAP's under its participation
        cap); done once every one is sent and final."""
        now = now_ms()
        cap = (self.order.algo or {}).get("max_participation_pct")
        for piece in self.schedule:
            if piece.due_ms > now or piece.n in self.children:
                continue
            quantity = piece.quantity
            if cap is not None:
                quantity = self._participate(piece, Decimal(str(cap)), status.volume)
            if quantity > 0:
                self._send(piece.n, quantity, *self._slice_terms())
            else:  # nothing traded to take part in: carried to the next slice
                self.children[piece.n] = {"qty": quantity, "type": "market", "price": None, "tif": "GTC",
                                          "state": "skipped", "at": 0.0}
                self._save(piece.n)
        return len(self.children) == len(self.schedule) and all(
            c["state"] in ("refused", "skipped") or status.children.get(n, {}).get("final")
            for n, c in self.children.items())

    def _participate(self, piece: Slice, pct: Decimal, volume: Decimal | None) -> Decimal:
        """The slice under the cap: at most `pct` of the volume traded since
        the slice before; the rest (and what earlier slices could not send)
        carries on. The mark and the carry are kept in the store."""
        mark = loads_exact(self.store.get(b"volume") or b"null")
        carried = Decimal(str(loads_exact(self.store.get(b"carried") or b"0")))
        traded = None
        if volume is not None and mark is not None:
            traded = volume - Decimal(str(mark)) if volume >= Decimal(str(mark)) else volume  # a reset
        elif volume is not None:
            traded = ZERO  # the first slice: nothing seen traded yet
        send, carry = participation(piece.quantity, carried, traded, pct, self.instrument)
        self.store.write_batch([(b"volume", orjson.dumps(volume, default=json_default)),
                                (b"carried", orjson.dumps(carry, default=json_default))])
        return send

    def _slice_terms(self) -> tuple[str, Decimal | None, str]:
        limit = (self.order.algo or {}).get("limit_price")
        return ("limit", Decimal(str(limit)), "IOC") if limit is not None else ("market", None, "GTC")

    def _last(self, status: AlgoStatus) -> tuple[int, dict[str, Any] | None, dict[str, Any] | None]:
        last = max(self.children, default=0)
        return last, self.children.get(last), status.children.get(last) if last else None

    def _iceberg(self, status: AlgoStatus) -> bool:
        """One child at a time at the parent's price; the next once it is final."""
        last, mine, known = self._last(status)
        if mine is not None and mine["state"] == "refused":
            return True
        if mine is not None and not (known is not None and known["final"]):
            return False
        display = Decimal(str((self.order.algo or {})["display_quantity"]))
        quantity = iceberg_next(self.order.quantity, display, status.filled_qty, self.instrument)
        if quantity <= 0:
            return True
        self._send(last + 1, quantity, "limit", self.order.price, self.order.time_in_force)
        return False

    def _chase(self, status: AlgoStatus) -> bool:
        """One post-only child at the best price; re-posted when the market
        leaves it, `max_chases` times, never beyond the cap; then the rest at
        the market (`cross`) or the end."""
        algo = self.order.algo or {}
        side, left = self.order.side, self.order.quantity - status.filled_qty
        last, mine, known = self._last(status)
        if left <= 0:
            return True
        if mine is not None and mine["state"] == "refused" and mine["type"] == "market":
            return True
        final = known is not None and known["final"]
        resting = mine is not None and mine["state"] != "refused" and not final
        if mine is not None and mine["type"] == "market":
            return not resting  # the final cross went out: done once it is final
        if status.bid is None or status.ask is None:
            return False  # no market yet: wait for one
        best = chase_price(side, status.bid, status.ask)
        tick = self.instrument.tick or Decimal("0.01")
        if resting:
            if mine["state"] == "accepted" and moved_away(side, Decimal(str(mine["price"])), status.bid,
                                                          status.ask, int(algo.get("chase_ticks", 1)), tick):
                mine["state"] = "canceling"
                self._save(last)
                self.tell(self.venue, CancelOrder(child_signal(self.order.signal_id, last), self.role))
            return False
        cap = algo.get("price_cap")
        cap = Decimal(str(cap)) if cap is not None else self.order.price
        if last > int(algo.get("max_chases", 10)) or beyond_cap(side, best, cap):
            if algo.get("cross"):
                self._send(last + 1, left, "market", None, "GTC")
                return False
            return True
        self._send(last + 1, left, "limit", best, "PO")
        return False

    def _split(self, status: AlgoStatus) -> bool:
        """Every leg at once, each a limit IOC child at its venue; the parent's
        progress is theirs together (its adapter sees only its own)."""
        for n, (venue, quantity, limit) in enumerate(self._legs(), start=1):
            if n not in self.children:
                self._send(n, Decimal(str(quantity)), "limit", Decimal(str(limit)), "IOC", venue=str(venue))
        progress = combined((k["filled_qty"], k["avg_price"], k["fees"])
                            for n in self.children if (k := status.children.get(n)))
        if progress != self.progress:
            self.progress = progress
            self.tell(self.venue, AlgoProgress(self.order.signal_id, *progress))
        return all(c["state"] == "refused" or status.children.get(n, {}).get("final")
                   for n, c in self.children.items())

    def _venue_of(self, n: int) -> str:
        venue = self.children[n].get("venue")
        return f"venue:{venue}" if venue else self.venue

    def _child_intent(self, n: int) -> OrderIntent:
        p, child = self.order, self.children[n]
        price = Decimal(str(child["price"])) if child["price"] is not None else None
        return OrderIntent(signal_id=child_signal(p.signal_id, n), symbol=p.symbol, side=p.side,
                           quantity=child["qty"], order_type=child["type"], price=price,
                           time_in_force=child["tif"], reduce_only=p.reduce_only,
                           exchange=child.get("venue") or p.exchange,
                           stop_loss=None, take_profits=(), strategy_id=p.strategy_id, phase=p.phase,
                           ttl_ms=10_000, parent=p.signal_id)

    def _send(self, n: int, quantity: Decimal, order_type: str, price: Decimal | None, tif: str, *,
              venue: str = "") -> None:
        """A new child: remembered (synced) before it is asked for, so a crash re-drives it."""
        self.children[n] = {"qty": quantity, "type": order_type, "price": price, "tif": tif,
                            "state": "checking", "at": time.monotonic()}
        if venue:
            self.children[n]["venue"] = venue
        self._save(n)
        self.sync_stores()
        self.tell("risk", CheckOrder(self._child_intent(n), self.role))

    def _redrive(self) -> None:
        now = time.monotonic()
        for n, child in self.children.items():
            settled = child["state"] in ("accepted", "refused", "canceling", "skipped")
            if settled or now - child["at"] < _RETRY_S:
                continue
            child["at"] = now
            if child["state"] in ("checking", "retry"):
                self.tell("risk", CheckOrder(self._child_intent(n), self.role))
            else:  # prepared, submitted: the CONFIRM again (a repeat answers the first outcome)
                self.tell(self._venue_of(n), SubmitOrder(child_signal(self.order.signal_id, n), self.role))

    def _child_step(self, signal_id: str, state: str) -> int | None:
        """The child `signal_id` moved on to `state`; its number, or None if it is not ours to move."""
        prefix = self.order.signal_id + "."
        if not signal_id.startswith(prefix) or not signal_id[len(prefix):].isdigit():
            return None
        n = int(signal_id[len(prefix):])
        child = self.children.get(n)
        if child is None or child["state"] in ("accepted", "refused", "canceling"):
            return None
        child["state"] = "checking" if state == "retry" else state
        child["at"] = time.monotonic() if state != "retry" else 0.0
        self._save(n)
        return n

    def _save(self, n: int) -> None:
        child = {k: v for k, v in self.children[n].items() if k != "at"}
        self.store.put(b"c:%d" % n, orjson.dumps(child, default=json_default))

    def on_stop(self) -> None:
        if self.finished:  # its parent is final: nothing here is needed again
            self.drop_store(self.store)

    def _finish(self, why: str) -> None:
        log.info("algo %s: done: %s", self.order.signal_id, why)
        self.finished = True
        self.exit_normally()

