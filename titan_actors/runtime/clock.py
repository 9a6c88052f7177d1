"""The engine's one wall clock: milliseconds since the Unix epoch, as the
protocols count them (`ts`, `expires_at`, event envelopes). Durations use
`time.monotonic()`; domain code takes `now_ms` as an argument."""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000
