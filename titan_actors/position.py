"""The position actor: one per symbol, the shadow state of what we hold.

Here it starts, owns its store (`<data>/positions/<SYMBOL>`) and follows the
directory. Fills, snapshots and reconciliation come with the shadow-state
issue.
"""

from __future__ import annotations

from typing import Any

from titan_actors.base import TitanActor, count_boot

__all__ = ["PositionActor"]


class PositionActor(TitanActor):
    needs = ("risk", "nats", "venue:")

    def on_start(self) -> None:
        self.symbol = self.config["symbol"]
        self.store = self.open_store(f"positions/{self.symbol}")
        self.boots = count_boot(self.store)

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, "symbol": self.symbol}
