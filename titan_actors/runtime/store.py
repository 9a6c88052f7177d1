"""One RocksDB directory per stateful actor (rocksdict, raw bytes).

Writes go through RocksDB's write-ahead log, so an unsynced write survives a
SIGKILL of the process; `fsync=True` syncs every write for power-loss safety.
`write_batch` applies several puts atomically (an event and its snapshot).

Failure: opening a directory that another live process holds raises
(RocksDB's lock); in an actor's `on_start` that is a failure at start, and
the supervisor retries with backoff until the old process is gone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

__all__ = ["Store"]


class Store:
    """A key-value store of bytes in `path`, owned by one actor."""

    def __init__(self, path: str, *, fsync: bool = False) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self._db = Rdict(path, Options(raw_mode=True))
        options = WriteOptions()
        options.sync = fsync
        self._db.set_write_options(options)

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def delete(self, key: bytes) -> None:
        self._db.delete(key)

    def write_batch(self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = ()) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in puts:
            batch.put(key, value)
        for key in deletes:
            batch.delete(key)
        self._db.write(batch)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            if not key.startswith(prefix):
                return
            yield key, value

    def close(self) -> None:
        self._db.close()
