"""The IPC gateway actor: serves the FastPath socket to signal senders.

Here it starts, owns its store (`<data>/gateway`: the replies it has given,
for idempotency) and follows the directory to reach the risk guard, the
venue adapters and the position supervisor. The FastPath protocol itself
comes with the FastPath issue.
"""

from __future__ import annotations

from typing import Any

from titan_actors.base import TitanActor, count_boot

__all__ = ["IpcGateway"]


class IpcGateway(TitanActor):
    needs = ("risk", "venue:", "positions", "nats")

    def on_start(self) -> None:
        self.store = self.open_store("gateway")
        self.boots = count_boot(self.store)

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, "socket": self.config.get("socket", "")}
