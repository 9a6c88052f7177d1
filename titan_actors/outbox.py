"""A producer's durable outbox of events (re-drive from the owner).

An actor that reports facts keeps its events in its own store until the NATS
bridge says it has stored them:

    writes = outbox.emit(subject, "OrderFilled", symbol, data)   # seq assigned
    store.write_batch(state_writes + writes)                     # one atomic batch
    outbox.push(actor)                                           # to the bridge

`push` sends what is not acknowledged (oldest first, in batches) to the
bridge; `acknowledge` drops what the bridge stored. The owner calls `push`
again on a timer and whenever the bridge's address changes, so an event
survives a SIGKILL of the producer, of the bridge, or both.

`seq` increases by one per source, with no gaps: it is assigned only inside
the batch that commits the event.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from titan_actors.messages import PublishEvents
from titan_actors.store import Store
from titan_actors.wire.events import Event

__all__ = ["Outbox"]

_NEXT = b"outbox:next"
_PREFIX = b"outbox:e:"
BATCH = 256
BRIDGE = "nats"


def _key(seq: int) -> bytes:
    return _PREFIX + f"{seq:016d}".encode()


class Outbox:
    def __init__(self, store: Store | None, source: str) -> None:
        """`store` None: kept in memory only (supervisors, which fork and so
        must not open RocksDB); give such an outbox a source unique to this
        incarnation, or its seqs would repeat after a restart."""
        self.store = store
        self.source = source
        self.next_seq = int(store.get(_NEXT) or b"1") if store is not None else 1
        events = [Event.from_json(v) for _k, v in store.items(_PREFIX)] if store is not None else []
        self.pending: dict[int, Event] = {e.seq: e for e in events}
        self._sent_at: dict[int, float] = {}

    def emit(self, subject: str, type_: str, symbol: str | None, data: dict[str, Any],
             ts: int | None = None) -> list[tuple[bytes, bytes]]:
        """Assign the next seq; returns the writes to commit with the fact."""
        event = Event(subject=subject, type=type_, ts=ts or time.time_ns() // 1_000_000,
                      source=self.source, seq=self.next_seq, symbol=symbol, data=data)
        self.next_seq += 1
        self.pending[event.seq] = event
        return [(_key(event.seq), event.to_json()), (_NEXT, str(self.next_seq).encode())]

    def push(self, actor: Any, *, resend_after_s: float = 0.0) -> int:
        """Send unacknowledged events to the bridge (those sent more than
        `resend_after_s` ago, or never); returns how many."""
        now = time.monotonic()
        due = [e for seq, e in sorted(self.pending.items())
               if seq not in self._sent_at or now - self._sent_at[seq] >= resend_after_s]
        for start in range(0, len(due), BATCH):
            batch = tuple(due[start:start + BATCH])
            if not actor.tell(BRIDGE, PublishEvents(self.source, batch)):
                return 0
            for event in batch:
                self._sent_at[event.seq] = now
        return len(due)

    def push_new(self, actor: Any) -> int:
        """Send the events never sent yet (called after each handler)."""
        if len(self._sent_at) >= len(self.pending):
            return 0
        return self.push(actor, resend_after_s=float("inf"))

    def acknowledge(self, seqs: Iterable[int]) -> None:
        seqs = tuple(seqs)
        deletes = [_key(seq) for seq in seqs if self.pending.pop(seq, None) is not None]
        for seq in seqs:
            self._sent_at.pop(seq, None)
        if deletes and self.store is not None:
            self.store.write_batch((), deletes)

    @property
    def depth(self) -> int:
        return len(self.pending)
