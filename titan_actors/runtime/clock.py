"""The engine's one wall clock: milliseconds since the Unix epoch, as the
protocols count them (`ts`, `expires_at`, event envelopes). Durations use
`time.monotonic()`; domain code takes `now_ms` as an argument.

`iso(ms)` and `parse_iso(text)` convert to and from the ISO-8601 text the
HTTP API speaks (UTC, milliseconds, `Z`)."""

from __future__ import annotations

import datetime as dt
import time

__all__ = ["iso", "now_ms", "parse_iso"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int | None) -> str | None:
    """`2026-11-29T10:00:00.123Z`; None for None or 0."""
    if not ms:
        return None
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str, *, end: bool = False) -> int:
    """An ISO-8601 date or date-time (UTC when it has no offset) in ms. A
    date alone as an `end` means the last millisecond of that day. Raises
    ValueError for anything else."""
    if len(value) == 10:
        day = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
        if end:
            return int((day + dt.timedelta(days=1)).timestamp() * 1000) - 1
        return int(day.timestamp() * 1000)
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)
