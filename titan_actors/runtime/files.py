"""Files and sockets the engine trusts: its own, private, never through a link.

Another user on the host may pre-create any path in a shared directory such
as /tmp. So: a path is trusted only when it is not a symbolic link and
belongs to the engine's uid; secrets are read only from files nobody else may
read or write; lock files are opened with `O_NOFOLLOW`; directories the
engine owns are 0700; the FastPath socket is bound inside a fresh 0700
directory and renamed onto its path, so there is never a moment where the
path is free for someone else to bind, and a stale socket of ours is
replaced atomically (never unlinked first).

Failure: `UnsafeFileError` (an OSError naming the path and the problem) for
anything not ours; the engine refuses to start, or the actor that met it
crashes and its supervisor decides.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import tempfile
from pathlib import Path

__all__ = [
    "UnsafeFileError",
    "bind_unix_socket",
    "check_ours",
    "open_lock_file",
    "private_dir",
    "read_private",
    "socket_is_live",
    "write_private",
]


class UnsafeFileError(OSError):
    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(errno.EPERM, f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def _owner_problem(info: os.stat_result) -> str | None:
    if info.st_uid != os.getuid():
        return f"belongs to uid {info.st_uid}, not to the engine's user {os.getuid()}; not touching it"
    return None


def check_ours(path: str | os.PathLike[str]) -> os.stat_result | None:
    """The lstat of `path` if it exists and is ours and not a link; None if absent."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFileError(path, "is a symbolic link; refusing to follow it")
    problem = _owner_problem(info)
    if problem:
        raise UnsafeFileError(path, problem)
    return info


def private_dir(path: Path) -> Path:
    """`path` (and missing parents) as a directory of ours with mode 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = check_ours(path)
    assert info is not None
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFileError(path, "is not a directory")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def read_private(path: Path) -> bytes:
    """The bytes of a regular file of ours that nobody else may read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(path, "is a symbolic link; refusing to follow it") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(path, "is not a regular file")
        problem = _owner_problem(info)
        if problem:
            raise UnsafeFileError(path, problem)
        if info.st_mode & 0o077:
            raise UnsafeFileError(path, f"has mode {stat.S_IMODE(info.st_mode):04o}; others may read it: "
                                        "chmod 600 it (and rotate the secret)")
        return fh.read()


def write_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and `data`, synced; never over an existing file or a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def open_lock_file(path: Path) -> int:
    """A descriptor of the lock file at `path` (created 0600), never through a link."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(path, "is a symbolic link; refusing to follow it") from None
        raise
    problem = _owner_problem(os.fstat(fd))
    if problem:
        os.close(fd)
        raise UnsafeFileError(path, problem)
    return fd


def socket_is_live(path: str) -> bool:
    """Whether something accepts connections on the Unix socket `path`;
    UnsafeFileError when the path is not ours to use (a link, another user's)."""
    if check_ours(path) is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


def bind_unix_socket(path: str, backlog: int = 512) -> socket.socket:
    """A listening, non-blocking Unix socket at `path`, mode 0600.

    A live socket there is refused (another engine serves it); a stale one of
    ours is replaced by the rename; anything else there (another user's file,
    a link, a regular file) is refused and left alone."""
    info = check_ours(path)
    if info is not None:
        if not stat.S_ISSOCK(info.st_mode):
            raise UnsafeFileError(path, "exists and is not a socket; not touching it")
        if socket_is_live(path):
            raise UnsafeFileError(path, "a live engine already serves it")
    private = tempfile.mkdtemp(prefix=".titan-bind-", dir=os.path.dirname(os.path.abspath(path)))
    staged = os.path.join(private, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(staged)
        os.chmod(staged, 0o600)
        sock.listen(backlog)
        os.rename(staged, path)
    except BaseException:
        sock.close()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        os.rmdir(private)
    sock.setblocking(False)
    return sock
