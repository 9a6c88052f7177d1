"""An actor's own I/O loop: its lanes, its sockets and its timers served on a
thread of its own instead of through thespian's loop.

Why: thespian rebuilds an epoll set of every watched fd on each wake (an
`epoll_create`, one `epoll_ctl` per fd, a close) and delivers timers 0.2-2.5 ms
late. On the data plane that was most of a hop's cost. This loop keeps one
`poll` set, waits once per wake, and fires timers from a heap when they are due.

Thespian stays the control plane: its thread keeps receiving messages (Init,
the directory, status, exit requests). Both threads run the actor's handlers
only while holding `lock`, so the actor's state is still touched by one thread
at a time. Anything only thespian's thread may do (send a thespian message) is
handed to it: `defer()` queues the call and wakes that thread through a
socketpair it watches.

Failure: an exception out of a handler run by this loop goes to `crash`, which
ends the process (let it crash); should it return, the loop ends. `stop()`
ends the loop at its next wake.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from titan_actors.runtime.waker import Waker

__all__ = ["ActorLoop"]

_POLL_IN = select.POLLIN
_POLL_BAD = select.POLLNVAL


class _Crashed(Exception):
    pass


class ActorLoop:
    """One actor's I/O thread.

    `fds()` names what to watch (called before every wait), `serve(ready)`
    handles the readable ones, `fire(payload)` a due timer, `after_wake()`
    runs once per wake after the rest (flush what the handlers queued). All
    four are called with `lock` held; `crash(what)` is called when one raises.
    """

    def __init__(self, *, name: str, fds: Callable[[], list[int]], serve: Callable[[list[int]], None],
                 fire: Callable[[Any], None], after_wake: Callable[[], None],
                 crash: Callable[[str], None]) -> None:
        self.lock = threading.RLock()
        self._fds, self._serve, self._fire = fds, serve, fire
        self._after_wake, self._crash = after_wake, crash
        self._timers: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._wake = Waker()  # wakes this loop
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
        heapq.heappush(self._timers, (time.monotonic() + seconds, next(self._seq), payload))
        if not self.in_loop():
            self._wake.poke()

    def poke(self) -> None:
        """Make the loop look at its fds and timers again (they changed from outside)."""
        self._wake.poke()

    def defer(self, call: Callable[..., Any], *args: Any) -> None:
        """Have thespian's thread run `call(*args)` (see `thespian_fd`)."""
        self._deferred.append((call, args))
        self._thespian.poke()

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
        self._wake.poke()
        if self._thread.is_alive() and not self.in_loop():
            self._thread.join(timeout)
        self._wake.close()
        self._thespian.close()

    # --- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve_forever()
        except _Crashed:
            self._stopping = True  # crash() returned (it ends the process in an actor)

    def _serve_forever(self) -> None:
        poller = select.poll()
        wake = self._wake.fileno()
        poller.register(wake, _POLL_IN)
        watched: set[int] = set()
        while not self._stopping:
            with self.lock:
                self._guarded("after-wake", self._after_wake)
                wanted = set(self._guarded("fds", self._fds) or ())
            for fd in watched - wanted:
                poller.unregister(fd)
            for fd in wanted - watched:
                poller.register(fd, _POLL_IN)
            watched = wanted
            events = poller.poll(self._timeout_ms())
            if self._stopping:
                return
            ready = []
            for fd, flags in events:
                if fd == wake:
                    self._wake.drain()
                elif flags & _POLL_BAD:
                    poller.unregister(fd)  # closed under us; fds() no longer names it
                    watched.discard(fd)
                else:
                    ready.append(fd)
            with self.lock:
                if ready:
                    self._guarded("fds-ready", self._serve, ready)
                self._fire_due()

    def _timeout_ms(self) -> float:
        if not self._timers:
            return 1000.0
        return max(0.0, (self._timers[0][0] - time.monotonic()) * 1000.0)

    def _fire_due(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _due, _seq, payload = heapq.heappop(self._timers)
            self._guarded(f"timer {payload!r}"[:80], self._fire, payload)

    def _guarded(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except Exception:
            self._crash(what)
            raise _Crashed(what) from None
