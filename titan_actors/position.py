"""The position actor: one per symbol, the shadow state of what we hold.

It applies every fill reported by the venue adapters once, by trade id,
writing the fill and the new position in one atomic batch to its store
(`<data>/positions/<SYMBOL>`), so a restarted actor has exactly the state it
had. Here the state is the net quantity per venue; the position math (entry,
PnL, fees), re-driven delivery and reconciliation come with the shadow-state
issue.
"""

from __future__ import annotations

from typing import Any

import orjson

from titan_actors.base import TitanActor, count_boot
from titan_actors.messages import ExecutionReport, PriceUpdates

__all__ = ["PositionActor"]


class PositionActor(TitanActor):
    needs = ("risk", "nats", "venue:")

    def on_start(self) -> None:
        self.symbol = self.config["symbol"]
        self.store = self.open_store(f"positions/{self.symbol}")
        self.boots = count_boot(self.store)
        raw = self.store.get(b"state")
        state = orjson.loads(raw) if raw else {"net": {}, "fills": 0}
        self.net: dict[str, float] = state["net"]
        self.fills = state["fills"]
        self.reports = 0
        self.last_price: float | None = None

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ExecutionReport):
            self._on_report(msg)
        elif isinstance(msg, PriceUpdates):
            self.last_price = msg.quotes[-1].last
        else:
            super().handle(msg, sender)

    def _on_report(self, report: ExecutionReport) -> None:
        self.reports += 1
        fill = report.last_fill
        if fill is None:
            return
        key = f"fill:{report.exchange}:{fill['trade_id']}".encode()
        if self.store.get(key) is not None:
            return  # applied before
        signed = fill["qty"] if report.side == "buy" else -fill["qty"]
        self.net[report.exchange] = self.net.get(report.exchange, 0.0) + signed
        self.fills += 1
        state = orjson.dumps({"net": self.net, "fills": self.fills})
        self.store.write_batch([(key, orjson.dumps(fill)), (b"state", state)])

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, "symbol": self.symbol, "net": self.net, "fills": self.fills,
                "reports": self.reports, "last_price": self.last_price}
