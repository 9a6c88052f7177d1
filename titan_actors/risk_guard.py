"""The risk guard actor: no order reaches a venue without its approval.

PREPARE comes as `CheckOrder` from the gateway; an approved order goes on
to its venue adapter as `StageOrder` (one hop fewer than answering the
gateway first), a refused one goes back as `CommandRefused`. The trading
state lives in `<data>/risk`.

The policy here is the pass-through of the FastPath issue: everything is
approved unless trading is HALTED. The rules, exposure view and operator
control come with the risk issue.

Failure: when the adapter is not in the directory the order is refused
(`VENUE_UNAVAILABLE`) — never sent elsewhere. If this actor is down or slow,
the gateway's timeout answers `INTERNAL` (fail closed).
"""

from __future__ import annotations

from typing import Any

from titan_actors.base import TitanActor, count_boot
from titan_actors.messages import CheckOrder, CommandRefused, StageOrder

__all__ = ["RiskGuard"]


class RiskGuard(TitanActor):
    needs = ("nats", "positions", "venue:")

    def on_start(self) -> None:
        self.store = self.open_store("risk")
        self.boots = count_boot(self.store)
        self.trading_state = (self.store.get(b"state:global") or b"ACTIVE").decode()
        self.checked = 0

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, CheckOrder):
            self._check(msg)
        else:
            super().handle(msg, sender)

    def _check(self, msg: CheckOrder) -> None:
        intent = msg.intent
        self.checked += 1
        if self.trading_state == "HALTED":
            self.tell(msg.reply_to, CommandRefused(intent.signal_id, "PREPARE", "HALTED",
                                                   "trading is halted"))
            return
        venue = f"venue:{intent.exchange}"
        if not self.tell(venue, StageOrder(intent, msg.reply_to)):
            self.tell(msg.reply_to, CommandRefused(intent.signal_id, "PREPARE", "VENUE_UNAVAILABLE",
                                                   f"the adapter of venue {intent.exchange} is down"))

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, "trading_state": self.trading_state, "checked": self.checked}
