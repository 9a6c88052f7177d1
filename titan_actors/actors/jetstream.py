"""JetStream publishes whose acknowledgements come back on one inbox.

nats-py's `js.publish` is a request per message: a future, a timer and a
`wait_for` each, and a task per message when many are published at once. On
the event path (several events per signal) that was a large part of the NATS
bridge's CPU. Here every message is a plain publish with a reply subject
under one inbox of ours; the acknowledgements arrive on one subscription and
are handed back in batches, one call per loop turn.

Runs entirely in the asyncio loop thread. `on_results` gets a list of
`(key, error)` pairs: `error` is None for a PubAck, else what went wrong (the
server's error, no stream listening, or no answer within `timeout_s`).

Failure: nothing is retried here. A message whose answer is lost is reported
as timed out once `timeout_s` has passed (checked whenever something is
published, and by `sweep()`); the caller publishes it again, and JetStream's
duplicate window (`Nats-Msg-Id`) keeps a late first copy from being stored twice.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Hashable
from typing import Any

import orjson

__all__ = ["AckedPublisher"]

_NO_RESPONDERS = "503"


class AckedPublisher:
    """See the module docstring."""

    def __init__(self, nc: Any, *, on_results: Callable[[list[tuple[Hashable, str | None]]], None],
                 timeout_s: float = 5.0) -> None:
        self._nc = nc
        self._on_results = on_results
        self._timeout_s = timeout_s
        self._prefix = ""
        self._tokens = itertools.count()
        self._waiting: dict[str, tuple[Hashable, float]] = {}
        self._results: list[tuple[Hashable, str | None]] = []
        self._handing_over = False
        self._last_sweep = time.monotonic()

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox()
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def publish(self, items: list[tuple[Hashable, str, bytes, dict[str, str]]]) -> None:
        """Publish `(key, subject, payload, headers)` items; their results come later."""
        now = time.monotonic()
        for key, subject, payload, headers in items:
            token = str(next(self._tokens))
            self._waiting[token] = (key, now)  # before: the answer may come while publish() awaits
            try:
                await self._nc.publish(subject, payload, reply=f"{self._prefix}.{token}", headers=headers)
            except BaseException:
                self._waiting.pop(token, None)  # never sent: the caller hears of it from the exception
                raise
        if now - self._last_sweep >= 1.0:
            self.sweep()

    def sweep(self) -> None:
        """Report as timed out what has waited longer than `timeout_s`."""
        now = time.monotonic()
        self._last_sweep = now
        late = [t for t, (_key, sent) in self._waiting.items() if now - sent > self._timeout_s]
        for token in late:
            key, _sent = self._waiting.pop(token)
            self._result(key, f"no acknowledgement within {self._timeout_s:g} s")

    async def _on_reply(self, msg: Any) -> None:
        token = msg.subject[len(self._prefix) + 1:]
        entry = self._waiting.pop(token, None)
        if entry is None:
            return  # reported as timed out already
        self._result(entry[0], _error_of(msg))

    def _result(self, key: Hashable, error: str | None) -> None:
        self._results.append((key, error))
        if not self._handing_over:
            self._handing_over = True
            asyncio.get_running_loop().call_soon(self._hand_over)

    def _hand_over(self) -> None:
        results, self._results = self._results, []
        self._handing_over = False
        self._on_results(results)


def _error_of(msg: Any) -> str | None:
    if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
        return "no stream listens on this subject"
    try:
        answer = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return f"not a PubAck: {msg.data[:80]!r}"
    if not isinstance(answer, dict):
        return f"not a PubAck: {msg.data[:80]!r}"
    error = answer.get("error")
    if error:
        return f"{error.get('code', '?')}: {error.get('description', error)}" if isinstance(error, dict) \
            else str(error)
    return None
