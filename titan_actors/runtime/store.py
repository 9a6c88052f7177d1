"""One RocksDB directory per stateful actor (rocksdict, raw bytes).

Writes go through RocksDB's write-ahead log unsynced: a write survives a
SIGKILL of the process at once (3 µs). `sync()` makes every write so far
survive a power loss too (one WAL sync for all of them: group commit). The
actor base calls it at the end of every batch that wrote, before anything
the batch decided leaves the worker (answers, sends to venues, messages on
lanes); see `TitanActor.after_handlers`. With `fsync=False` (`[engine]
fsync = false`) `sync()` does nothing: SIGKILL-safe, not power-loss-safe.
A write that only deletes does not call for a sync: what it forgets (an
acknowledged event, a delivered fill, a pruned reply) is at worst sent or
pruned again after a power loss, and every receiver ignores repeats.

Failure: opening a directory that another live process holds raises
(RocksDB's lock); in an actor's `on_start` that is a failure at start, and
the supervisor retries with backoff until the old process is gone. A failed
sync raises (the actor crashes and restarts from what is on disk).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from rocksdict import Options, Rdict, WriteBatch

from titan_actors.runtime.trace import TRACE, trace

__all__ = ["Store"]


class Store:
    """A key-value store of bytes in `path`, owned by one actor."""

    def __init__(self, path: str, *, fsync: bool = True) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.path = path
        self.fsync = fsync
        self.dirty = False  # written since the last sync
        self.syncs = 0
        self._db = Rdict(path, Options(raw_mode=True))

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)
        self._wrote((key,), True)

    def delete(self, key: bytes) -> None:
        self._db.delete(key)
        self._wrote((key,), False)

    def write_batch(self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = ()) -> None:
        batch = WriteBatch(raw_mode=True)
        keys = []
        for key, value in puts:
            batch.put(key, value)
            keys.append(key)
        added = bool(keys)
        for key in deletes:
            batch.delete(key)
            keys.append(key)
        self._db.write(batch)
        self._wrote(keys, added)

    def _wrote(self, keys: Iterable[bytes], added: bool) -> None:
        if not added:
            return
        self.dirty = True
        if TRACE:
            trace("write", store=self.path, keys=[k.decode(errors="replace") for k in keys], synced=False)

    def sync(self) -> None:
        """Make every write so far durable against a power loss (no-op when
        nothing was written since the last sync, or with fsync off)."""
        if not self.dirty:
            return
        self.dirty = False
        if not self.fsync:
            return
        self._db.flush_wal(True)
        self.syncs += 1
        if TRACE:
            trace("sync", store=self.path)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            if not key.startswith(prefix):
                return
            yield key, value

    def close(self) -> None:
        self.sync()
        self._db.close()
