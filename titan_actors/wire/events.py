"""The event envelope of shared/spec/nats-subjects.md, pure.

    {"event_id", "type", "ts", "source", "seq", "symbol", "data"}

`event_id` is `<source>:<seq>`: a producer assigns `seq` in the same store
batch that records the fact, so the fact and its id never part — a re-sent
event keeps its id, and JetStream stores it once (`Nats-Msg-Id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from titan_actors.domain.money import json_default, loads_exact

__all__ = ["Event", "event_id"]


def event_id(source: str, seq: int) -> str:
    return f"{source}:{seq}"


@dataclass(frozen=True, slots=True)
class Event:
    subject: str
    type: str
    ts: int
    source: str
    seq: int
    symbol: str | None
    data: dict[str, Any]

    @property
    def event_id(self) -> str:
        return event_id(self.source, self.seq)

    def envelope(self) -> bytes:
        """The JSON published on NATS."""
        return orjson.dumps({"event_id": self.event_id, "type": self.type, "ts": self.ts,
                             "source": self.source, "seq": self.seq, "symbol": self.symbol,
                             "data": self.data}, default=json_default)

    def to_json(self) -> bytes:
        return orjson.dumps(self, default=json_default)

    @staticmethod
    def from_json(data: bytes) -> Event:
        return Event(**loads_exact(data))  # exact: a 28-digit average stays one
