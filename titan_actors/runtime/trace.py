"""A durability trace for tests: with `TITAN_DURABILITY_TRACE=<file>` set,
every store write (with its keys), every WAL sync and every side effect that
acts on or answers from a write (a send to a venue, an answer written to a
client, a message leaving the worker) is appended to that file as one JSON
line, in the order it happened, from every process of the engine.

Off (one dictionary lookup at import) unless the variable is set; never on
in production.

Failure: a trace line that cannot be written raises; only tests turn it on.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

__all__ = ["TRACE", "trace"]

_PATH = os.environ.get("TITAN_DURABILITY_TRACE", "")
TRACE = bool(_PATH)


def trace(kind: str, **fields: Any) -> None:
    """Append one event (no-op unless tracing)."""
    if not TRACE:
        return
    line = orjson.dumps({"kind": kind, "pid": os.getpid(), "t": time.monotonic_ns(), **fields},
                        default=str) + b"\n"
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
