"""Process facts read from /proc (Linux): liveness, parent, process group.

A zombie counts as dead: it has exited and only waits to be reaped.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket

__all__ = [
    "CRASH_EXIT_CODE",
    "cpu_ticks",
    "hostname",
    "parent_of",
    "pgid_alive",
    "pgid_members",
    "pid_alive",
    "set_parent_death_signal",
    "set_process_name",
    "usage",
]


def _stat_fields(pid: int | str) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ..."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
        return fh.read().rpartition(")")[2].split()


def cpu_ticks(pid: int) -> tuple[str, int]:
    """(process name, user + system clock ticks so far) of `pid`."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
        stat = fh.read()
    fields = stat.rpartition(")")[2].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], int(fields[11]) + int(fields[12])


def usage(pid: int) -> tuple[float, int]:
    """(CPU seconds spent, resident memory in bytes) of `pid`."""
    _name, ticks = cpu_ticks(pid)
    rss_pages = int(_stat_fields(pid)[21])
    return ticks / os.sysconf("SC_CLK_TCK"), rss_pages * os.sysconf("SC_PAGE_SIZE")


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    if pid <= 0:
        return False
    try:
        return _stat_fields(pid)[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def parent_of(pid: int) -> int:
    return int(_stat_fields(pid)[1])


def pgid_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def pgid_alive(pgid: int) -> bool:
    return bool(pgid_members(pgid))


CRASH_EXIT_CODE = 70
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def hostname() -> str:
    return socket.gethostname()


def set_process_name(name: str) -> None:
    """The kernel's name of this process (`ps -o comm`, `top`): 15 bytes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies.

    SIGKILL rather than SIGTERM: thespian turns SIGTERM into a graceful
    shutdown that an orphan may never finish.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
