"""A cumulative latency histogram an actor keeps and shows in its status
(Prometheus' shape: counts per upper bound, a sum and a count), so that
`GET /metrics` can expose it without the actor knowing Prometheus."""

from __future__ import annotations

import bisect
from typing import Any

__all__ = ["LATENCY_BOUNDS_S", "Histogram"]

#: Upper bounds in seconds: sub-millisecond FastPath answers to slow venues.
LATENCY_BOUNDS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    def __init__(self, bounds: tuple[float, ...] = LATENCY_BOUNDS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> dict[str, Any]:
        """`{"buckets": [[upper bound, cumulative count], ...], "sum", "count"}`."""
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append([bound, cumulative])
        return {"buckets": buckets, "sum": self.sum, "count": cumulative}
