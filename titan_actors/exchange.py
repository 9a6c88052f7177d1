"""The venue adapter actor: one per configured exchange.

Here it starts, owns its store (`<data>/venues/<name>`: the order journal)
and follows the directory to reach the position actors, the risk guard and
the NATS bridge. Orders come with the FastPath and venues issues.
"""

from __future__ import annotations

from typing import Any

from titan_actors.base import TitanActor, count_boot

__all__ = ["VenueAdapter"]


class VenueAdapter(TitanActor):
    needs = ("positions", "position:", "risk", "nats")

    def on_start(self) -> None:
        self.venue = self.config["name"]
        self.store = self.open_store(f"venues/{self.venue}")
        self.boots = count_boot(self.store)

    def status_detail(self) -> dict[str, Any]:
        return {
            "boots": self.boots,
            "venue": self.venue,
            "exchange": self.config.get("exchange", ""),
            "market": self.config.get("market", ""),
        }
