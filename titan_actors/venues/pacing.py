"""Pacing of the requests an adapter makes to an exchange: a token bucket
below the venue's published limit and a priority queue in front of it.

Pure: time comes in as `now` (seconds, monotonic).

- The bucket refills at `rate` per second and holds at most `burst` tokens,
  with `burst = published - rate - 1` (at least 1): in any one-second window
  at most `burst + rate = published - 1` requests start, so the limit is
  never exceeded even right after an idle spell, with one request to spare
  for the network's jitter.
- The queue serves cancels first, then look-ups (unknown outcomes), then new
  orders, then the venue-state questions of reconciliation, then polls; a
  request that has waited `AGE_S` is served as a look-up so polls are never
  starved. Requests with the same `key` (a client order id) run one at a
  time, in order: a cancel never overtakes the create of its own order.
- `full()`: a new order would wait longer than `max_wait_s`; the adapter
  answers BUSY instead of queueing it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from titan_actors.domain.throttle import TokenBucket

__all__ = ["PRIORITY", "PUBLISHED_LIMITS", "Pacer", "Request", "default_rate"]

#: Requests per second each exchange publishes for an account's order and
#: query endpoints (the lowest of its documented per-second limits).
PUBLISHED_LIMITS = {"bybit": 10.0, "binance": 10.0, "mexc": 15.0}
PRIORITY = {"cancel": 0, "resize": 0, "cancel_after": 0, "lookup": 1, "create": 2, "state": 3, "poll": 4}
AGE_S = 2.0


def default_rate(exchange: str) -> float:
    """80 % of the venue's published limit."""
    return PUBLISHED_LIMITS.get(exchange, 10.0) * 0.8


@dataclass(slots=True)
class Request:
    kind: str  # a PRIORITY key
    key: str  # a client order id, or a symbol for state/poll
    start: Callable[[], Any]  # returns the coroutine to run
    not_before: float = 0.0
    queued_at: float = 0.0
    seq: int = 0
    tags: dict[str, Any] = field(default_factory=dict)


class Pacer:
    def __init__(self, *, rate: float, published: float, max_wait_s: float, now: float) -> None:
        self.published = published
        self.bucket = TokenBucket(rate, now, burst=published - rate - 1)
        self.max_wait_s = max_wait_s
        self.queue: list[Request] = []
        self.busy_keys: set[str] = set()
        self._seq = itertools.count()

    def put(self, request: Request, now: float, *, delay: float = 0.0) -> None:
        request.queued_at, request.not_before, request.seq = now, now + delay, next(self._seq)
        self.queue.append(request)

    def queued(self, kind: str, key: str) -> bool:
        return any(r.kind == kind and r.key == key for r in self.queue)

    def drop(self, kind: str, key: str) -> bool:
        """Take a queued request out (True if there was one); never a running one."""
        before = len(self.queue)
        self.queue = [r for r in self.queue if not (r.kind == kind and r.key == key)]
        return len(self.queue) != before

    def active(self, key: str) -> bool:
        """A request for `key` is queued or running."""
        return key in self.busy_keys or any(r.key == key for r in self.queue)

    def full(self) -> bool:
        """New orders queued now would wait longer than `max_wait_s`."""
        waiting = sum(1 for r in self.queue if PRIORITY[r.kind] <= PRIORITY["create"])
        return waiting + 1 > self.bucket.burst + self.bucket.rate * self.max_wait_s

    def due(self, now: float) -> list[Request]:
        """The requests to start now, each with its token taken; their keys are busy
        until `done(key)`."""
        started: list[Request] = []
        first: dict[str, int] = {}
        for r in self.queue:
            first[r.key] = min(first.get(r.key, r.seq), r.seq)
        ready = sorted(
            (r for r in self.queue if r.not_before <= now and r.seq == first[r.key]),
            key=lambda r: (self._rank(r, now), r.seq),
        )
        for request in ready:
            if request.key in self.busy_keys:
                continue
            if not self.bucket.take(now):
                break
            self.queue.remove(request)
            self.busy_keys.add(request.key)
            started.append(request)
        return started

    def done(self, key: str) -> None:
        self.busy_keys.discard(key)

    @staticmethod
    def _rank(request: Request, now: float) -> int:
        rank = PRIORITY[request.kind]
        return min(rank, PRIORITY["lookup"]) if now - request.queued_at >= AGE_S else rank
