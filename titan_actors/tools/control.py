"""The control socket between `titan run` and the other CLI commands.

`titan run` listens on an abstract Unix socket named after its data dir
(`\\0titan-control/<hash of the data dir>`), so `titan status` and
`titan stop` find the engine of a data dir without a file to clean up. One
request per connection: a JSON object on one line, answered by one line.
Only processes of the same user are served (`SO_PEERCRED`).

Failure: `EngineNotRunning` when nothing listens for that data dir;
`ControlError` when the engine answered with an error or not in time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import select
import socket
import struct
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from titan_actors.domain.money import json_default, loads_exact

__all__ = ["ControlError", "ControlServer", "EngineNotRunning", "control_name", "control_request"]

log = logging.getLogger(__name__)

_PEERCRED = struct.Struct("3i")
_MAX_REQUEST = 64 * 1024


class EngineNotRunning(RuntimeError):
    pass


class ControlError(RuntimeError):
    pass


def control_name(data_dir: Path) -> str:
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:24]
    return f"\0titan-control/{digest}"


class ControlServer:
    """Serves requests with `handler(request) -> reply` from `poll()`."""

    def __init__(self, data_dir: Path) -> None:
        self.name = control_name(data_dir)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.name)
        self._sock.listen(16)
        self._sock.setblocking(False)

    def poll(self, timeout: float, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            return
        try:
            conn, _ = self._sock.accept()
        except BlockingIOError:
            return
        with conn:
            self._serve(conn, handler)

    def _serve(self, conn: socket.socket, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        _pid, uid, _gid = _PEERCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        if uid != os.getuid():
            return
        conn.settimeout(2.0)
        try:
            data = b""
            while not data.endswith(b"\n") and len(data) < _MAX_REQUEST:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            request = json.loads(data or b"{}")
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            reply = handler(request)
        except (ValueError, OSError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:  # the engine must survive a failing query
            log.exception("control request failed")
            reply = {"ok": False, "error": repr(exc)}
        with contextlib.suppress(OSError):
            conn.sendall(orjson.dumps(reply, default=_default, option=orjson.OPT_NON_STR_KEYS) + b"\n")

    def close(self) -> None:
        self._sock.close()


def _default(obj: Any) -> Any:
    """Decimals as exact JSON numbers; anything else the handler returned as text."""
    return json_default(obj) if isinstance(obj, Decimal) else str(obj)


def control_request(data_dir: Path, request: dict[str, Any], timeout: float = 10.0, *,
                    exact: bool = False) -> dict[str, Any]:
    """Send one request to `titan run`; its reply (numbers that are not
    integers as Decimals with `exact`, else floats). Raises `EngineNotRunning`
    or `ControlError` (the engine's own error message)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(control_name(data_dir))
        except (ConnectionRefusedError, FileNotFoundError):
            raise EngineNotRunning(f"no engine is running on the data dir {Path(data_dir).resolve()}")
        data = b""
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise ControlError(f"the engine did not answer within {timeout}s")
        except OSError as exc:
            raise ControlError(f"the control connection broke: {exc}")
    if not data:
        raise ControlError("the engine closed the control connection without an answer")
    reply = loads_exact(data) if exact else json.loads(data)
    if not reply.get("ok", False):
        raise ControlError(reply.get("error", "unknown error"))
    return reply
