"""Durable queues of a producer: re-drive from the owner until acknowledged.

Two kinds, one mechanism (`_DurableQueue`):

- `Outbox`: the actor's events, for the NATS bridge (`PublishEvents`,
  acknowledged by `EventsStored`). `seq` increases by one per source with no
  gap, because it is assigned only inside the batch that commits the fact:

      writes = outbox.emit(subject, "OrderFilled", symbol, data)
      store.write_batch(state_writes + writes)          # one atomic batch

- `Deliveries`: messages that must reach another actor (a fill to its
  position actor), as `Deliver` batches acknowledged by `Delivered`.

The owner pushes what is new after each handler, re-sends what is not
acknowledged on a timer and whenever the receiver's address changes, so an
item survives a SIGKILL of the producer, of the receiver, or both.
Receivers must be idempotent: an item can arrive more than once.

`store` None keeps the queue in memory only (supervisors: they fork, so they
open no RocksDB); give such a queue a source unique to the incarnation.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable
from typing import Any

from titan_actors.messages import Deliver, PublishEvents
from titan_actors.runtime.clock import now_ms
from titan_actors.runtime.store import Store
from titan_actors.wire.events import Event

__all__ = ["BRIDGE", "Deliveries", "Outbox"]

BATCH = 256
BRIDGE = "nats"


class _DurableQueue:
    prefix: bytes

    def __init__(self, store: Store | None, source: str) -> None:
        self.store = store
        self.source = source
        self._next_key = self.prefix + b"next"
        self._item_prefix = self.prefix + b"i:"
        self.next_seq = int(store.get(self._next_key) or b"1") if store is not None else 1
        self.pending: dict[int, tuple[str, Any]] = {}
        if store is not None:
            for _key, value in store.items(self._item_prefix):
                seq, dest, item = self._load(value)
                self.pending[seq] = (dest, item)
        self._sent_at: dict[int, float] = {}
        self._unsent: list[int] = sorted(self.pending)  # for `push_new`, oldest first

    def _key(self, seq: int) -> bytes:
        return self._item_prefix + f"{seq:016d}".encode()

    def _add(self, dest: str, item: Any, stored: bytes) -> list[tuple[bytes, bytes]]:
        seq = self.next_seq
        self.next_seq += 1
        self.pending[seq] = (dest, item)
        self._unsent.append(seq)
        return [(self._key(seq), stored), (self._next_key, str(self.next_seq).encode())]

    def push_new(self, actor: Any) -> int:
        """Send the items added since the last call (the base does it after
        each handler): no look at the rest of the queue, however long."""
        if not self._unsent:
            return 0
        seqs, self._unsent = self._unsent, []
        return self._send(actor, [seq for seq in seqs if seq in self.pending and seq not in self._sent_at])

    def push(self, actor: Any, *, resend_after_s: float = 0.0, only: str | None = None) -> int:
        """Send what is not acknowledged (sent more than `resend_after_s` ago,
        or never), oldest first, batched per receiver; returns how many."""
        now = time.monotonic()
        due = [
            seq
            for seq, (dest, _item) in sorted(self.pending.items())
            if (only is None or dest == only)
            and (seq not in self._sent_at or now - self._sent_at[seq] >= resend_after_s)
        ]
        return self._send(actor, due)

    def _send(self, actor: Any, seqs: list[int]) -> int:
        """Tell each receiver its items, in batches; one a receiver cannot be
        told (no address yet) waits for the timer or the directory."""
        now = time.monotonic()
        by_dest: dict[str, list[tuple[int, Any]]] = {}
        for seq in seqs:
            dest, item = self.pending[seq]
            by_dest.setdefault(dest, []).append((seq, item))
        sent = 0
        for dest, items in by_dest.items():
            for start in range(0, len(items), BATCH):
                batch = items[start:start + BATCH]
                if not actor.tell(dest, self._message(batch), urgent=False):
                    break
                for seq, _item in batch:
                    self._sent_at[seq] = now
                sent += len(batch)
        return sent

    def acknowledge(self, seqs: Iterable[int]) -> None:
        seqs = tuple(seqs)
        deletes = [self._key(seq) for seq in seqs if self.pending.pop(seq, None) is not None]
        for seq in seqs:
            self._sent_at.pop(seq, None)
        if deletes and self.store is not None:
            self.store.write_batch((), deletes)

    @property
    def depth(self) -> int:
        return len(self.pending)

    def destinations(self) -> set[str]:
        return {dest for dest, _item in self.pending.values()}

    def _message(self, batch: list[tuple[int, Any]]) -> Any:
        raise NotImplementedError

    def _load(self, value: bytes) -> tuple[int, str, Any]:
        raise NotImplementedError


class Outbox(_DurableQueue):
    """Events for the NATS bridge."""

    prefix = b"outbox:"

    def emit(self, subject: str, type_: str, symbol: str | None, data: dict[str, Any],
             ts: int | None = None) -> list[tuple[bytes, bytes]]:
        """Assign the next seq; returns the writes to commit with the fact."""
        event = Event(subject=subject, type=type_, ts=ts or now_ms(),
                      source=self.source, seq=self.next_seq, symbol=symbol, data=data)
        return self._add(BRIDGE, event, event.to_json())

    def _message(self, batch: list[tuple[int, Any]]) -> Any:
        return PublishEvents(self.source, tuple(event for _seq, event in batch))

    def _load(self, value: bytes) -> tuple[int, str, Any]:
        event = Event.from_json(value)
        return event.seq, BRIDGE, event


class Deliveries(_DurableQueue):
    """Messages that must reach another actor, acknowledged by `Delivered`."""

    prefix = b"deliver:"

    def enqueue(self, dest: str, message: Any) -> list[tuple[bytes, bytes]]:
        seq = self.next_seq
        return self._add(dest, message, pickle.dumps((seq, dest, message), protocol=pickle.HIGHEST_PROTOCOL))

    def _message(self, batch: list[tuple[int, Any]]) -> Any:
        return Deliver(self.source, tuple(batch))

    def _load(self, value: bytes) -> tuple[int, str, Any]:
        return pickle.loads(value)
