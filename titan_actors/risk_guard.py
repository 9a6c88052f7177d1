"""The risk guard actor: pre-trade checks, trading state, exposure view.

Here it starts, owns its store (`<data>/risk`: trading state and policy) and
follows the directory. The rules come with the risk issue; until then the
engine has no path that sends orders.
"""

from __future__ import annotations

from typing import Any

from titan_actors.base import TitanActor, count_boot

__all__ = ["RiskGuard"]


class RiskGuard(TitanActor):
    needs = ("nats", "positions")

    def on_start(self) -> None:
        self.store = self.open_store("risk")
        self.boots = count_boot(self.store)
        self.trading_state = (self.store.get(b"state:global") or b"ACTIVE").decode()

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, "trading_state": self.trading_state}
