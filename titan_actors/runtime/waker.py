"""A socketpair that wakes a thread blocked in poll/select on its read end.

`poke()` from any thread writes one byte (a full buffer means a wake is
already pending, which is enough); the woken thread calls `drain()` before
it looks at what it was woken for. After `close()` a poke does nothing.
"""

from __future__ import annotations

import socket

__all__ = ["Waker"]


class Waker:
    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def fileno(self) -> int:
        return self._r.fileno()

    def poke(self) -> None:
        try:
            self._w.send(b"\x01")
        except OSError:
            pass  # full: a wake is pending already; closed: nobody waits any more

    def drain(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        self._r.close()
        self._w.close()
