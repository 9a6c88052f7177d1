"""FastLanes: the data-plane transport between worker processes on one host.

Each worker listens on one Unix stream socket in the abstract namespace
(`\\0titan/<engine>/<pid>`: no file to clean up, no path-length limit to hit).
A sender opens one persistent connection per peer worker, queues every
message for it while its handlers run, and writes the whole queue in one
`send` when they return (batching). Frames are `u32 length | pickle` of
`(source role, destination role, message)`, so the receiving worker hands each
message to the right actor with the `sender` it would have had in memory.

Trust: pickle executes code, and any local process could connect to an
abstract socket, so a connection is accepted only from a process of the same
user *and* the same process group (the engine's workers), checked with
`SO_PEERCRED`. Anything else is closed unread.

Failure: lanes are at-most-once, like thespian. A worker that died loses what
was queued for it; `send` answers False when no lane can be opened, and the
caller falls back to thespian. A peer that stops reading is cut off once its
queue passes `MAX_PENDING` bytes.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct
from collections.abc import Iterator
from typing import Any

__all__ = ["LaneHub", "lane_name"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_PEERCRED = struct.Struct("3i")
MAX_FRAME = 64 * 1024 * 1024
MAX_PENDING = 32 * 1024 * 1024
_READ_CHUNK = 64 * 1024  # under malloc's mmap threshold: no mmap/munmap per read


def lane_name(engine_id: str, pid: int) -> str:
    """The abstract socket name of the actor process `pid` of engine `engine_id`."""
    return f"\0titan/{engine_id}/{pid}"


def _frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


class _Inbound:
    __slots__ = ("buf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()


class _Outbound:
    __slots__ = ("buf", "name", "sock", "urgent")

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self.buf = bytearray()
        self.urgent = False


class LaneHub:
    """One worker's lanes: its listener, the connections peers opened to it,
    and the connections it opened to its peers (by lane name)."""

    def __init__(self, *, engine_id: str, role: str) -> None:
        self.role = role  # the worker's name, in log lines
        self.name = lane_name(engine_id, os.getpid())
        self._pgid = os.getpgid(0)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.name)
        self._listener.listen(256)
        self._listener.setblocking(False)
        self._inbound: dict[int, _Inbound] = {}
        self._outbound: dict[str, _Outbound] = {}
        self.dropped = 0
        self.sent = 0
        self.received = 0

    # --- receiving ------------------------------------------------------------

    def fds(self) -> list[int]:
        return [self._listener.fileno(), *self._inbound]

    def read(self, ready: list[int]) -> Iterator[tuple[str, str, Any]]:
        """Yield `(source role, destination role, message)` for every whole frame."""
        for fd in ready:
            if fd == self._listener.fileno():
                self._accept_all()
            elif fd in self._inbound:
                yield from self._read_conn(self._inbound[fd])

    def _accept_all(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            if not self._trusted(conn):
                conn.close()
                continue
            conn.setblocking(False)
            self._inbound[conn.fileno()] = _Inbound(conn)

    def _trusted(self, conn: socket.socket) -> bool:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        pid, uid, _gid = _PEERCRED.unpack(raw)
        try:
            same_group = os.getpgid(pid) == self._pgid
        except ProcessLookupError:
            return False
        if uid != os.getuid() or not same_group:
            log.warning("lane %s refused a connection from pid %d uid %d", self.role, pid, uid)
            return False
        return True

    def _read_conn(self, conn: _Inbound) -> Iterator[tuple[str, str, Any]]:
        try:
            while True:
                chunk = conn.sock.recv(_READ_CHUNK)
                if not chunk:
                    self._close_inbound(conn)
                    break
                conn.buf += chunk
                if len(chunk) < _READ_CHUNK:
                    break
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close_inbound(conn)
        yield from self._frames(conn)

    def _frames(self, conn: _Inbound) -> Iterator[tuple[str, str, Any]]:
        buf, pos = conn.buf, 0
        try:
            while len(buf) - pos >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buf, pos)
                if size > MAX_FRAME:
                    log.error("lane %s: frame of %d bytes, closing", self.role, size)
                    self._close_inbound(conn)
                    return
                end = pos + _HEADER.size + size
                if len(buf) < end:
                    break
                src, dst, msg = pickle.loads(memoryview(buf)[pos + _HEADER.size : end])
                pos = end
                self.received += 1
                yield src, dst, msg
        finally:
            del buf[:pos]

    def _close_inbound(self, conn: _Inbound) -> None:
        self._inbound.pop(conn.sock.fileno(), None)
        conn.sock.close()

    # --- sending --------------------------------------------------------------

    def send(self, name: str, src: str, dst: str, msg: Any, *, urgent: bool = True) -> bool:
        """Queue `msg` from role `src` for role `dst` of the worker on lane `name`.

        An urgent message goes out with the next `flush()`; one that is not
        waits for `flush(lazy_too=True)` or for an urgent one to the same
        worker (fewer writes, fewer wake-ups of the peer). Returns False
        (nothing queued) when no lane to that worker can be opened; the
        caller then uses thespian.
        """
        out = self._outbound.get(name)
        if out is None:
            out = self._connect(name)
            if out is None:
                return False
        out.buf += _frame((src, dst, msg))
        out.urgent = out.urgent or urgent
        self.sent += 1
        return True

    def _connect(self, name: str) -> _Outbound | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(name)
        except OSError:
            sock.close()
            return None
        sock.setblocking(False)
        out = _Outbound(sock, name)
        self._outbound[name] = out
        return out

    def flush(self, *, lazy_too: bool = False) -> bool:
        """Write every queue holding an urgent message (every queue with
        `lazy_too`); True when none of those is left part-written."""
        idle = True
        for name, out in list(self._outbound.items()):
            if not out.buf or not (out.urgent or lazy_too):
                continue
            if self._drain(name, out):
                out.urgent = False
            else:
                idle = False
        return idle

    def urgent(self) -> bool:
        """Whether `flush()` has anything to write."""
        return any(out.buf and out.urgent for out in self._outbound.values())

    def holding(self) -> bool:
        """Whether anything (not urgent) waits to be written."""
        return any(out.buf for out in self._outbound.values())

    def _drain(self, name: str, out: _Outbound) -> bool:
        try:
            while out.buf:
                n = out.sock.send(out.buf)
                del out.buf[:n]
        except (BlockingIOError, InterruptedError):
            if len(out.buf) > MAX_PENDING:
                log.error("lane to %r is not read; dropping %d bytes", name, len(out.buf))
                self.forget(name)
                return True
            return False
        except OSError as exc:
            log.info("lane to %r broke (%s); what was queued is lost", name, exc)
            self.forget(name)
        return True

    def lanes(self) -> list[str]:
        """The names of the workers this hub has a lane to."""
        return list(self._outbound)

    def forget(self, name: str) -> None:
        """Close the lane to worker `name` (it restarted or went away)."""
        out = self._outbound.pop(name, None)
        if out is not None:
            self.dropped += len(out.buf) > 0
            out.sock.close()

    def close(self) -> None:
        self.flush(lazy_too=True)
        for name in list(self._outbound):
            self.forget(name)
        for conn in list(self._inbound.values()):
            self._close_inbound(conn)
        self._listener.close()
