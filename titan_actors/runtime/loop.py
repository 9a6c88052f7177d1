"""A worker's one loop: its lanes, its actors' sockets and timers, and their
asyncio clients (nats-py, ccxt), all on one asyncio event loop in one thread.

Why asyncio and one loop: the NATS bridge and the ccxt adapters are asyncio
clients. With a loop of their own beside the worker's, every result crossed
threads through a socketpair (a system call and a wake-up each way); on the
worker's own loop a result is a callback like any other.

The selector is `poll`, not epoll: `fds()` names plain fd numbers, and an fd
closed and reopened under the same number between two wakes must still be
watched, which poll (stateless per call) does and epoll (registered per open
file) does not.

Thespian stays the control plane: its thread keeps receiving messages (start
and stop of actors, the directory, outside askers). Both threads run the
actors' handlers only while holding `lock`, so an actor's state is touched by
one thread at a time. Anything only thespian's thread may do (send a thespian
message) is handed to it: `defer()` queues the call and wakes that thread
through a socketpair it watches.

Failure: an exception out of `fds`, `serve`, `fire` or `after_wake` goes to
`crash`, which ends the process in a worker; should it return, the loop
stops. `stop()` ends the loop; `drain_tasks()` then gives what is still
pending on it (connections closing) a bounded time to finish.
"""

from __future__ import annotations

import asyncio
import collections
import selectors
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from titan_actors.runtime.waker import Waker

__all__ = ["ActorLoop"]


class _Crashed(Exception):
    pass


class ActorLoop:
    """One worker's loop thread.

    `fds()` names what to watch (asked after every wake), `serve(ready)`
    handles readable ones, `fire(payload)` a due timer, `after_wake()` runs
    once after a wake's work (drain, flush). All four are called with `lock`
    held; `crash(what)` is called when one raises. `call(fn, *args)` runs any
    function the same way (an asyncio client's result, from any thread).
    """

    def __init__(self, *, name: str, fds: Callable[[], list[int]], serve: Callable[[list[int]], None],
                 fire: Callable[[Any], None], after_wake: Callable[[], None],
                 crash: Callable[[str], None]) -> None:
        self.lock = threading.RLock()
        self._fds, self._serve, self._fire = fds, serve, fire
        self._after_wake, self._crash = after_wake, crash
        self.aio = asyncio.SelectorEventLoop(selectors.PollSelector())
        self._watched: set[int] = set()
        self._wake_due = False
        self._thespian = Waker()  # wakes thespian's thread for deferred calls
        self._deferred: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = collections.deque()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-io", daemon=True)

    # --- used from any thread ----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def after(self, seconds: float, payload: Any) -> None:
        """Fire `payload` in about `seconds` (never earlier)."""
        when = time.monotonic() + seconds  # the loop's clock (asyncio uses time.monotonic)
        self._soon(self._at, when, payload)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the loop under the lock, then the wake's `after_wake`."""
        self._soon(self._dispatch, "call", fn, *args)

    def call_here(self, fn: Callable[..., Any], *args: Any) -> None:
        """On the loop's thread, from a callback of the loop: `call`, but now."""
        self._dispatch("call", fn, *args)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run `coro` on the loop; returns its `concurrent.futures.Future`."""
        return asyncio.run_coroutine_threadsafe(coro, self.aio)

    def poke(self) -> None:
        """Make the loop look at its fds and timers again (they changed from outside)."""
        self._soon(self._wake)

    def defer(self, call: Callable[..., Any], *args: Any) -> None:
        """Have thespian's thread run `call(*args)` (see `thespian_fd`)."""
        self._deferred.append((call, args))
        self._thespian.poke()

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.in_loop():
            self.aio.call_soon(fn, *args)
            return
        try:
            self.aio.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop is closed: the worker is ending

    # --- used from thespian's thread -----------------------------------------------------

    def thespian_fd(self) -> int:
        """The fd thespian's thread must watch: readable when deferred calls wait."""
        return self._thespian.fileno()

    def run_deferred(self) -> None:
        self._thespian.drain()
        while self._deferred:
            call, args = self._deferred.popleft()
            call(*args)

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping = True
        if self.aio.is_running():
            self._soon(self.aio.stop)
        if self._thread.is_alive() and not self.in_loop():
            self._thread.join(timeout)
        self._thespian.close()

    def drain_tasks(self, timeout: float = 2.0) -> None:
        """After `stop()`, on the calling thread: let pending tasks (connections
        closing) finish for at most `timeout`, then close the loop."""
        if self.aio.is_closed() or self.aio.is_running():
            return
        pending = [t for t in asyncio.all_tasks(self.aio) if not t.done()]
        if pending:
            self.aio.run_until_complete(asyncio.wait(pending, timeout=timeout))
        for task in pending:
            task.cancel()
        self.aio.close()

    # --- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.aio)
        self._wake()
        try:
            self.aio.run_forever()
        finally:
            for fd in list(self._watched):
                self.aio.remove_reader(fd)
            self._watched.clear()

    def _at(self, when: float, payload: Any) -> None:
        self.aio.call_at(when, self._dispatch, f"timer {payload!r}"[:80], self._call_fire, payload)

    def _call_fire(self, payload: Any) -> None:
        self._fire(payload)

    def _ready(self, fd: int) -> None:
        self._dispatch("fds-ready", self._call_serve, fd)

    def _call_serve(self, fd: int) -> None:
        self._serve([fd])

    def _dispatch(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        if self._stopping:
            return
        with self.lock:
            self._guarded(what, fn, *args)
        self._wake()

    def _wake(self) -> None:
        """One `after_wake` and one look at the fds for everything this turn of the loop ran."""
        if not self._wake_due:
            self._wake_due = True
            self.aio.call_soon(self._after)

    def _after(self) -> None:
        self._wake_due = False
        if self._stopping:
            return
        with self.lock:
            self._guarded("after-wake", self._after_wake)
            wanted = set(self._guarded("fds", self._fds) or ())
        if self._stopping:
            return
        for fd in self._watched - wanted:
            self.aio.remove_reader(fd)
        for fd in wanted - self._watched:
            self.aio.add_reader(fd, self._ready, fd)
        self._watched = wanted

    def _guarded(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except Exception:
            self._crash(what)
            self._stopping = True  # crash() returned (it ends the process in a worker)
            self.aio.stop()
            return None
