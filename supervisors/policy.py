"""OTP supervision decisions as pure functions: restart types, strategies,
restart intensity and start backoff. No I/O, no thespian.

Semantics follow Erlang/OTP `supervisor`:

- restart type: `permanent` children are always restarted, `transient` ones
  only after an abnormal exit, `temporary` ones never;
- strategy: `one_for_one` restarts the failed child, `one_for_all` stops
  every other child (reverse start order) and restarts all (start order),
  `rest_for_one` does that for the failed child and those started after it;
- intensity: more than `intensity` restarts within `period_s` seconds and the
  supervisor gives up: it stops its children and exits, and its own parent
  decides;
- backoff (our addition, asked by the design): a child that fails during its
  start is started again after an exponentially growing delay.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

__all__ = [
    "RESTART_TYPES",
    "STRATEGIES",
    "Intensity",
    "backoff_delay",
    "restart_scope",
    "should_restart",
]

RESTART_TYPES = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


def should_restart(restart: str, *, normal_exit: bool) -> bool:
    """Whether a child of this restart type is restarted after this exit."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return not normal_exit
    if restart == "temporary":
        return False
    raise ValueError(f"unknown restart type {restart!r}")


def restart_scope(strategy: str, order: Sequence[str], failed: str) -> list[str]:
    """The children (in start order) that the failure of `failed` restarts."""
    if strategy == "one_for_one":
        return [failed]
    if strategy == "one_for_all":
        return list(order)
    if strategy == "rest_for_one":
        return list(order[order.index(failed) :])
    raise ValueError(f"unknown strategy {strategy!r}")


def backoff_delay(failures: int, *, initial_s: float, max_s: float) -> float:
    """Delay before the next start after `failures` consecutive failed starts."""
    if failures <= 0:
        return 0.0
    return min(initial_s * (2 ** (failures - 1)), max_s)


class Intensity:
    """Counts restarts in a sliding window of `period_s` seconds."""

    def __init__(self, intensity: int, period_s: float) -> None:
        if intensity < 0 or period_s <= 0:
            raise ValueError("intensity must be >= 0 and period_s > 0")
        self.intensity = intensity
        self.period_s = period_s
        self._times: collections.deque[float] = collections.deque()

    def record(self, now: float) -> bool:
        """Record one restart at `now`; False means the limit is exceeded: give up."""
        self._times.append(now)
        while self._times and self._times[0] <= now - self.period_s:
            self._times.popleft()
        return len(self._times) <= self.intensity

    def __len__(self) -> int:
        return len(self._times)
