"""The risk guard actor: no order reaches a venue without its approval.

PREPARE comes as `CheckOrder` from the gateway; an approved order goes on
to its venue adapter as `StageOrder` (one hop fewer than answering the
gateway first), a refused one goes back as `CommandRefused`.

Trading states (`domain/trading_state.py`) are set by operators
(`SetTradingState`, from `titan halt|resume` and the NATS operator
subjects). A change is written to `<data>/risk` together with its
`titan.evt.risk.state.v1` event in one batch *before* it is acknowledged,
so it survives a SIGKILL and a restart; only a resume lifts it. The gateway
is told every state (`TradingStates`) for its PONG.

Failure: when the adapter is not in the directory the order is refused
(`VENUE_UNAVAILABLE`) — never sent elsewhere. If this actor is down or slow,
the gateway's timeout answers `INTERNAL` (fail closed).
"""

from __future__ import annotations

from typing import Any

from titan_actors.base import TitanActor, count_boot
from titan_actors.domain.trading_state import STATES, effective_state, valid_scope
from titan_actors.messages import (
    CheckOrder,
    CommandRefused,
    PriceUpdate,
    PriceUpdates,
    SetTradingState,
    StageOrder,
    TradingStates,
    TradingStateSet,
)
from titan_actors.wire import subjects

__all__ = ["RiskGuard"]

_STATE = b"state:"


class RiskGuard(TitanActor):
    needs = ("nats", "positions", "venue:", "gateway")

    def on_start(self) -> None:
        self.store = self.open_store("risk")
        self.boots = count_boot(self.store)
        self.states = {k[len(_STATE):].decode(): v.decode() for k, v in self.store.items(_STATE)}
        self.open_outbox(self.store)
        self.checked = 0
        self.refused = 0
        self.prices: dict[str, PriceUpdate] = {}

    def on_directory(self) -> None:
        gateway = self.directory.get("gateway")
        if gateway is not None and gateway.pid != getattr(self, "_told_gateway", 0):
            self._told_gateway = gateway.pid
            self.tell("gateway", TradingStates(dict(self.states)))

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, CheckOrder):
            self._check(msg)
        elif isinstance(msg, SetTradingState):
            self._set_state(msg, sender)
        elif isinstance(msg, PriceUpdates):
            for quote in msg.quotes:
                self.prices[quote.symbol] = quote
        else:
            super().handle(msg, sender)

    # --- pre-trade -------------------------------------------------------------------

    def _check(self, msg: CheckOrder) -> None:
        intent = msg.intent
        self.checked += 1
        state, scope = effective_state(self.states, venue=intent.exchange, symbol=intent.symbol)
        if state == "HALTED" or (state == "REDUCING" and not intent.reduce_only):
            self.refused += 1
            why = "trading is halted" if state == "HALTED" else "trading is REDUCING: reduce-only orders only"
            refusal = CommandRefused(intent.signal_id, "PREPARE", "HALTED", f"{why} ({scope})")
            self.tell(msg.reply_to, refusal)
            return
        if not self.tell(f"venue:{intent.exchange}", StageOrder(intent, msg.reply_to)):
            self.tell(msg.reply_to, CommandRefused(intent.signal_id, "PREPARE", "VENUE_UNAVAILABLE",
                                                   f"the adapter of venue {intent.exchange} is down"))

    # --- trading states -----------------------------------------------------------------

    def _set_state(self, msg: SetTradingState, sender: Any) -> None:
        if msg.mode not in STATES or not valid_scope(msg.scope):
            current = self.states.get(msg.scope, "ACTIVE")  # refused: callers validate first
            refused = TradingStateSet(msg.corr, msg.scope, current, dict(self.states))
            self.tell(sender, refused, via="thespian")
            return
        previous = self.states.get(msg.scope, "ACTIVE")
        key = _STATE + msg.scope.encode()
        if msg.mode == "ACTIVE":
            self.states.pop(msg.scope, None)
        else:
            self.states[msg.scope] = msg.mode
        assert self.outbox is not None
        event = self.outbox.emit(subjects.RISK_STATE, "TradingStateChanged", None, {
            "scope": msg.scope, "trading_state": msg.mode, "previous": previous,
            "reason": msg.reason, "operator": msg.operator, "states": dict(self.states),
        })
        puts = [*event] + ([(key, msg.mode.encode())] if msg.mode != "ACTIVE" else [])
        deletes = [key] if msg.mode == "ACTIVE" else []
        self.store.write_batch(puts, deletes)  # persisted before it is acknowledged
        self.tell(sender, TradingStateSet(msg.corr, msg.scope, msg.mode, dict(self.states)))
        self.tell("gateway", TradingStates(dict(self.states)))

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, "trading_state": self.states.get("global", "ACTIVE"),
                "states": dict(self.states), "checked": self.checked, "refused": self.refused}
