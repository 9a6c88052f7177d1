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
                task.add_done_callback(lambda t: self._settle_here(on_done, t))
            return
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

    def _settle_here(self, on_done: Callable[[Any, BaseException | None], None],
                     task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self._actor_loop.call_here(self._guard, on_done, None if error is not None else task.result(), error)

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
