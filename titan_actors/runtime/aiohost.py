"""An asyncio event loop in a background thread, for actors that need asyncio
(nats-py, ccxt.async_support).

The actor stays single-threaded for its own state: coroutines run in the loop
thread, and their results (or things the loop wants to tell the actor, such
as an incoming NATS message) are queued and announced with one byte on a
socketpair the actor watches. The actor calls `drain()` when that fd is ready
and the callbacks run in the actor's thread.

An actor that hosts a loop must never `createActor` (fork after threads).
A callback that raises propagates out of `drain()`, into the actor's
let-it-crash handler.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from titan_actors.runtime.waker import Waker

__all__ = ["AsyncHost"]

Callback = Callable[..., None]


class AsyncHost:
    """Owns one loop thread and the socketpair that wakes the actor."""

    def __init__(self, *, name: str = "titan-aio") -> None:
        self._waker = Waker()
        self._ready: collections.deque[tuple[Callback, tuple[Any, ...]]] = collections.deque()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def fileno(self) -> int:
        return self._waker.fileno()

    def submit(
        self,
        coro: Coroutine[Any, Any, Any],
        on_done: Callable[[Any, BaseException | None], None] | None = None,
    ) -> None:
        """Run `coro` in the loop; `on_done(result, error)` runs later in the actor thread."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if on_done is not None:
            future.add_done_callback(lambda f: self._settle(on_done, f))

    def _settle(self, on_done: Callable[[Any, BaseException | None], None], future: Any) -> None:
        if future.cancelled():
            self.post(on_done, None, asyncio.CancelledError())
        elif future.exception() is not None:
            self.post(on_done, None, future.exception())
        else:
            self.post(on_done, future.result(), None)

    def post(self, callback: Callback, *args: Any) -> None:
        """Thread-safe: queue `callback(*args)` for the actor thread and wake it."""
        self._ready.append((callback, args))
        self._waker.poke()  # one pending wake is enough: drain() empties the whole queue

    def drain(self) -> int:
        """In the actor thread: run every queued callback; returns how many ran."""
        self._waker.drain()
        ran = 0
        while self._ready:
            callback, args = self._ready.popleft()
            callback(*args)
            ran += 1
        return ran

    def stop(self, timeout: float = 2.0) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        self._waker.close()
