"""The one token bucket and the one retry backoff, pure: time and randomness
come in as arguments."""

from __future__ import annotations

import random

__all__ = ["TokenBucket", "backoff_s"]


class TokenBucket:
    """`rate` tokens a second, at most `burst` in store (default one second's
    worth, and never less than one token, so any rate > 0 lets orders through)."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, now: float, *, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = max(rate if burst is None else burst, 1.0)
        self.tokens = self.burst
        self.at = now

    def available(self, now: float) -> float:
        """Tokens in store at `now` (a request may start when ≥ 1)."""
        return min(self.burst, self.tokens + max(now - self.at, 0.0) * self.rate)

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        self.tokens, self.at = self.available(now), max(now, self.at)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def backoff_s(attempt: int, *, first_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """The wait before retry number `attempt` (0-based): exponential from
    `first_s`, capped at `max_s`, with "equal jitter" (between half and all
    of it) so that retries of many orders do not line up. Any attempt number
    is fine (the exponent is capped before it can overflow)."""
    ceiling = min(max_s, first_s * 2.0 ** min(max(attempt, 0), 60))
    return ceiling / 2 + (rng or random).uniform(0.0, ceiling / 2)
