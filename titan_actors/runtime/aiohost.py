"""An actor's view of its worker's asyncio loop, for asyncio clients
(nats-py, ccxt.async_support).

Coroutines run on the worker's one loop (`ActorLoop.aio`). A result, or
anything a coroutine hands over with `post()`, comes back as a call of the
actor's callback, run like every handler of that actor: under the loop's
lock, counted in its batch, and a crash of that actor alone if it raises.
Once the actor is gone (crashed, killed, stopped), nothing is called.

`stop()` cancels what this actor still has running; a connection to close
is submitted after it (`submit(client.close())`), and the worker gives such
tasks a bounded time when it ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from titan_actors.runtime.loop import ActorLoop

__all__ = ["AsyncHost"]

Callback = Callable[..., None]


class AsyncHost:
    """`guard(callback, *args)` runs a callback as one of the actor's handlers."""

    def __init__(self, loop: ActorLoop, guard: Callable[..., None]) -> None:
        self._actor_loop = loop
        self.loop: asyncio.AbstractEventLoop = loop.aio
        self._guard = guard
        self._futures: set[concurrent.futures.Future[Any]] = set()

    def submit(
        self,
        coro: Coroutine[Any, Any, Any],
        on_done: Callable[[Any, BaseException | None], None] | None = None,
    ) -> None:
        """Run `coro` on the loop; `on_done(result, error)` runs later as a handler."""
        future = self._actor_loop.submit(coro)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        if on_done is not None:
            future.add_done_callback(lambda f: self._settle(on_done, f))

    def _settle(self, on_done: Callable[[Any, BaseException | None], None],
                future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled():
            return  # stopped: the actor that asked is gone
        error = future.exception()
        self.post(on_done, None if error is not None else future.result(), error)

    def post(self, callback: Callback, *args: Any) -> None:
        """From any thread or coroutine: run `callback(*args)` as a handler of the actor."""
        self._actor_loop.call(self._guard, callback, *args)

    def stop(self) -> None:
        """Cancel every coroutine this actor still has running."""
        for future in list(self._futures):
            future.cancel()
