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
        self._futures: set[concurrent.futures.Future[Any] | asyncio.Future[Any]] = set()

    def submit(
        self,
        coro: Coroutine[Any, Any, Any],
        on_done: Callable[[Any, BaseException | None], None] | None = None,
    ) -> None:
        """Run `coro` on the loop; `on_done(result, error)` runs later as a handler.

        From the loop's own thread the coroutine becomes a task at once and
        its result is handled in the turn it ends; from another thread it
        is handed over thread-safely."""
        if self._actor_loop.in_loop():
            task = self.loop.create_task(coro)
            self._futures.add(task)
            task.add_done_callback(self._futures.discard)
            if on_done is not None:
                task.add_done_callback(lambda t: self._settle(on_done, t, now=True))
            return
        future = self._actor_loop.submit(coro)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        if on_done is not None:
            future.add_done_callback(lambda f: self._settle(on_done, f, now=False))

    def _settle(self, on_done: Callable[[Any, BaseException | None], None],
                future: concurrent.futures.Future[Any] | asyncio.Future[Any], *, now: bool) -> None:
        """`on_done(result, error)` as a handler: at once (`now`, in a callback
        of the loop), else queued to the loop. Nothing once it was cancelled."""
        if future.cancelled():
            return  # stopped: the actor that asked is gone
        error = future.exception()
        result = None if error is not None else future.result()
        if now:
            self._actor_loop.call_here(self._guard, on_done, result, error)
        else:
            self.post(on_done, result, error)

    def post(self, callback: Callback, *args: Any) -> None:
        """From any thread or coroutine: run `callback(*args)` as a handler of the actor."""
        self._actor_loop.call(self._guard, callback, *args)

    def stop(self) -> None:
        """Cancel every coroutine this actor still has running."""
        in_loop = self._actor_loop.in_loop()
        for future in list(self._futures):
            if isinstance(future, asyncio.Future) and not in_loop:
                self.loop.call_soon_threadsafe(future.cancel)  # a task is the loop's to cancel
            else:
                future.cancel()
