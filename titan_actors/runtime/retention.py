"""Retiring what a store no longer needs after a retention period, a little
at a time.

An owner that writes something to forget later (a final reply, a final
order, a fill's key) adds `index(ts_ms, keys)` to the same write batch: one
entry `<prefix><ts:016d>:<n>` listing the keys. `prune(now_ms)` walks the
index from the oldest and deletes the keys of entries older than the
retention, at most `chunk` entries per call, so a large backlog is worked
off over several timer ticks instead of pausing the actor; RocksDB compacts
the deleted ranges in its background threads.

Failure: none of its own; a crash between two chunks leaves the rest for the
next call (deleting a key twice is harmless).
"""

from __future__ import annotations

import itertools
import time

import orjson

from titan_actors.runtime.store import Store

__all__ = ["DAY_MS", "Retention"]

DAY_MS = 86_400_000


class Retention:
    def __init__(self, store: Store, prefix: bytes, retention_ms: int, *, chunk: int = 500) -> None:
        self.store = store
        self.prefix = prefix
        self.retention_ms = retention_ms
        self.chunk = chunk
        self.retired = 0
        self._n = itertools.count()

    def index(self, ts_ms: int, keys: list[bytes]) -> tuple[bytes, bytes]:
        """The index entry (a put) that retires `keys` once `ts_ms` is older than the retention."""
        entry = b"%s%016d:%d:%d" % (self.prefix, max(ts_ms, 0), time.monotonic_ns(), next(self._n))
        return entry, orjson.dumps([k.decode() for k in keys])

    def prune(self, now_ms: int) -> bool:
        """Retire one chunk; True when more is due (call again soon)."""
        cutoff = now_ms - self.retention_ms
        deletes: list[bytes] = []
        for entries, (entry, value) in enumerate(self.store.items(self.prefix)):
            if int(entry[len(self.prefix):len(self.prefix) + 16]) >= cutoff:
                break
            if entries == self.chunk:
                self._delete(deletes)
                return True
            deletes += [entry, *(k.encode() for k in orjson.loads(value))]
        self._delete(deletes)
        return False

    def _delete(self, deletes: list[bytes]) -> None:
        if deletes:
            self.store.write_batch((), deletes)
            self.retired += len(deletes)
