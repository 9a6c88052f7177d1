"""The dead man's switch, pure.

A strategy arms a switch for a scope (`global`, `venue:NAME`,
`symbol:SYMBOL`) with a heartbeat carrying `timeout_ms`, and keeps it from
firing by sending the next heartbeat before the deadline. A heartbeat with
`timeout_ms` 0 disarms it. A switch whose deadline passes fires once (the
risk guard then sets the scope REDUCING, unless it is halted already, and
cancels its resting orders) and is gone until the next heartbeat arms it
again.

`countdowns` says, for one venue, which of its symbols a switch covers and
with what timeout: what the venue adapter keeps armed at the exchange
(Binance's countdown cancel-all, Bybit's disconnection protection), so that
resting orders die with the engine too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["MAX_TIMEOUT_MS", "MIN_TIMEOUT_MS", "Switch", "countdowns", "due", "heartbeat"]

MIN_TIMEOUT_MS = 500
MAX_TIMEOUT_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Switch:
    scope: str
    timeout_ms: int
    deadline: int  # ms since the epoch


def heartbeat(switches: Mapping[str, Switch], scope: str, timeout_ms: int, now_ms: int) -> dict[str, Switch]:
    """The switches after a heartbeat for `scope` (0 disarms)."""
    after = dict(switches)
    if timeout_ms:
        after[scope] = Switch(scope, timeout_ms, now_ms + timeout_ms)
    else:
        after.pop(scope, None)
    return after


def due(switches: Mapping[str, Switch], now_ms: int) -> list[Switch]:
    """The switches whose deadline has passed, oldest deadline first."""
    return sorted((s for s in switches.values() if s.deadline <= now_ms), key=lambda s: s.deadline)


def countdowns(timeouts: Mapping[str, int], venue: str, symbols: Iterable[str]) -> dict[str, int]:
    """Symbol → the shortest timeout of a switch (scope → timeout_ms) that
    covers it on `venue`; symbols no switch covers are left out."""
    symbols = frozenset(symbols)
    out: dict[str, int] = {}
    for scope, timeout in timeouts.items():
        kind, _, name = scope.partition(":")
        covered = symbols if scope == "global" or (kind == "venue" and name == venue) else \
            [name] if kind == "symbol" and name in symbols else []
        for symbol in covered:
            out[symbol] = min(timeout, out.get(symbol, timeout))
    return out
