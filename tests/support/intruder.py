"""Acting as another user on the same host: what an attacker could do.

`as_nobody(fn)` runs `fn` in a forked child that dropped to uid/gid 65534
and returns what it returned (pickled through a pipe). `listening_ports(pids)`
reads the kernel's socket table for the TCP ports those processes listen on.
"""

from __future__ import annotations

import contextlib
import encodings.idna  # noqa: F401  (the intruder cannot read our stdlib after dropping to nobody)
import os
import pickle
import traceback
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["NOBODY", "as_nobody", "listening_ports"]

NOBODY = 65534


def as_nobody(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the intruder
        code = 0
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result: Any = fn()
        except BaseException:
            result, code = RuntimeError(traceback.format_exc()), 1
        try:
            with os.fdopen(write_fd, "wb") as out:
                out.write(pickle.dumps(result))
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    result = pickle.loads(data) if data else RuntimeError(f"intruder died with status {status}")
    if isinstance(result, RuntimeError):
        raise result
    return result


def _socket_inodes(pids: Iterable[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(FileNotFoundError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(int(link[8:-1]))
    return inodes


def listening_ports(pids: Iterable[int]) -> set[int]:
    """TCP ports on which any of `pids` listens (IPv4 and IPv6)."""
    inodes = _socket_inodes(pids)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[9]) in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
