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
from decimal import Decimal
from typing import Any

import orjson

from titan_actors.domain.algos import Slice, child_signal, iceberg_next, twap_schedule
from titan_actors.domain.money import Instrument, json_default, loads_exact, to_decimal_or_none
from titan_actors.domain.orders import Order
from titan_actors.domain.signals import OrderIntent
from titan_actors.messages import (
    AlgoDone,
    AlgoStatus,
    AlgoStatusRequest,
    CheckOrder,
    CommandRefused,
    OrderAccepted,
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
        # n → {"qty", "state": checking | prepared | submitted | accepted | refused, "at": monotonic}
        self.children: dict[int, dict[str, Any]] = {
            int(k[2:]): loads_exact(v) for k, v in self.store.items(b"c:")}
        for child in self.children.values():
            child["at"] = 0.0  # in flight before the restart: asked again now
            child["qty"] = Decimal(str(child["qty"]))
        self.finished = False
        self.after(0.0, _TICK)

    def status_detail(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for child in self.children.values():
            states[child["state"]] = states.get(child["state"], 0) + 1
        return {"parent": self.order.signal_id, "algo": (self.order.algo or {}).get("type"),
                "slices": len(self.schedule), "children": states, "finished": self.finished}

    def _plan(self) -> list[Slice]:
        algo = self.order.algo or {}
        if algo.get("type") == "TWAP":
            return twap_schedule(self.order.signal_id, self.order.quantity, algo,
                                 self.order.confirmed_at or now_ms(), self.instrument)
        return []  # ICEBERG: decided child by child

    # --- the loop -----------------------------------------------------------------------

    def on_wakeup(self, payload: Any) -> None:
        if payload != _TICK or self.finished:
            return
        asked = max([*self.children, len(self.schedule)])
        if not self.tell(self.venue, AlgoStatusRequest(self.order.signal_id, asked)):
            log.warning("algo %s: %s is not reachable yet", self.order.signal_id, self.venue)
        self.after(_TICK_S, _TICK)

    def handle(self, msg: Any, sender: Any) -> None:
        match msg:
            case AlgoStatus():
                self._on_status(msg)
            case OrderPrepared():
                self._child_step(msg.signal_id, "prepared")
                self.tell(self.venue, SubmitOrder(msg.signal_id, self.role))
            case OrderAccepted():
                self._child_step(msg.signal_id, "accepted")
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
        now = now_ms()
        for n, child in self.children.items():  # what the journal says over what we remember
            known = status.children.get(n)
            if known is not None and known["stage"] == "CONFIRMED" and child["state"] != "refused":
                child["state"] = "accepted"
        self._redrive()
        algo = (self.order.algo or {}).get("type")
        if algo == "TWAP":
            for piece in self.schedule:
                if piece.due_ms <= now and piece.n not in self.children:
                    self._send(piece.n, piece.quantity)
            done = len(self.children) == len(self.schedule) and all(
                c["state"] == "refused" or status.children.get(n, {}).get("final")
                for n, c in self.children.items())
        else:  # ICEBERG: the next child once the one before is final; none after a refusal
            last = max(self.children, default=0)
            current = status.children.get(last) if last else None
            refused = bool(last) and self.children[last]["state"] == "refused"
            done = refused
            if not refused and (not last or (current is not None and current["final"])):
                display = Decimal(str((self.order.algo or {})["display_quantity"]))
                quantity = iceberg_next(self.order.quantity, display, status.filled_qty, self.instrument)
                if quantity > 0:
                    self._send(last + 1, quantity)
                else:
                    done = True
        if done:
            filled = status.filled_qty
            if filled >= self.order.quantity:
                self.tell(self.venue, AlgoDone(self.order.signal_id, "FILLED", "every child filled"))
            else:
                kind = (self.order.algo or {}).get("type")
                why = f"{kind} ended with {filled} of {self.order.quantity} filled"
                self.tell(self.venue, AlgoDone(self.order.signal_id, "EXPIRED", why))

    def _child_intent(self, n: int, quantity: Decimal) -> OrderIntent:
        p, algo = self.order, self.order.algo or {}
        if algo.get("type") == "ICEBERG":
            order_type, price, tif = "limit", p.price, p.time_in_force
        elif algo.get("limit_price") is not None:
            order_type, price, tif = "limit", Decimal(str(algo["limit_price"])), "IOC"
        else:
            order_type, price, tif = "market", None, "GTC"
        return OrderIntent(signal_id=child_signal(p.signal_id, n), symbol=p.symbol, side=p.side,
                           quantity=quantity, order_type=order_type, price=price, time_in_force=tif,
                           reduce_only=p.reduce_only, exchange=p.exchange, stop_loss=None, take_profits=(),
                           strategy_id=p.strategy_id, phase=p.phase, ttl_ms=10_000, parent=p.signal_id)

    def _send(self, n: int, quantity: Decimal) -> None:
        """A new child: remembered (synced) before it is asked for, so a crash re-drives it."""
        self.children[n] = {"qty": quantity, "state": "checking", "at": time.monotonic()}
        self._save(n)
        self.sync_stores()
        self.tell("risk", CheckOrder(self._child_intent(n, quantity), self.role))

    def _redrive(self) -> None:
        now = time.monotonic()
        for n, child in self.children.items():
            if child["state"] in ("accepted", "refused") or now - child["at"] < _RETRY_S:
                continue
            child["at"] = now
            if child["state"] in ("checking", "retry"):
                self.tell("risk", CheckOrder(self._child_intent(n, child["qty"]), self.role))
            else:  # prepared, submitted: the CONFIRM again (a repeat answers the first outcome)
                self.tell(self.venue, SubmitOrder(child_signal(self.order.signal_id, n), self.role))

    def _child_step(self, signal_id: str, state: str) -> None:
        prefix = self.order.signal_id + "."
        if not signal_id.startswith(prefix) or not signal_id[len(prefix):].isdigit():
            return
        n = int(signal_id[len(prefix):])
        child = self.children.get(n)
        if child is None or child["state"] in ("accepted", "refused"):
            return
        child["state"] = "checking" if state == "retry" else state
        child["at"] = time.monotonic() if state != "retry" else 0.0
        self._save(n)

    def _save(self, n: int) -> None:
        child = self.children[n]
        self.store.put(b"c:%d" % n, orjson.dumps({"qty": child["qty"], "state": child["state"]},
                                                  default=json_default))

    def _finish(self, why: str) -> None:
        log.info("algo %s: done: %s", self.order.signal_id, why)
        self.finished = True
        self.exit_normally()

