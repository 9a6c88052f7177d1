"""A FastPath client, sync and asyncio.

    with FastPathClient(socket_path, secret) as client:
        prepared = client.prepare("sig-1", "BTCUSDT", "buy", 0.01)
        accepted = client.confirm("sig-1")
        execution = client.next_execution(timeout=2)

Pipelining: `send()` returns the request's `req_id` at once; `wait(req_id)`
returns its reply whenever it comes, keeping the other replies for their own
`wait`. `EXECUTION` pushes are queued for `next_execution()`.

Every reply's MAC is checked (`ReplySignatureError` if wrong). A request
without `req_id` gets a fresh one, without `ts` the current time.

Failure: `ConnectionClosed` when the engine closed the connection (after a
BAD_FRAME or BAD_SIGNATURE reply, or because it stopped); `TimeoutError`
when no reply came in time. Resending the same request (same `signal_id`
and type) is always safe: the engine executes it at most once.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from titan_actors.runtime.clock import now_ms
from titan_actors.secret import SECRET_FILE, read_secret
from titan_actors.wire.fastpath import (
    Frame,
    FrameReader,
    decode_payload,
    encode_message,
    mac_ok,
)

__all__ = [
    "AsyncFastPathClient",
    "ConnectionClosed",
    "FastPathClient",
    "FastPathError",
    "ReplySignatureError",
    "load_secret",
    "prepare_request",
]


class FastPathError(Exception):
    pass


class ReplySignatureError(FastPathError):
    """A reply's MAC does not match: it is not from the engine (or the secrets differ)."""


class ConnectionClosed(FastPathError):
    pass


def load_secret(data_dir: str | os.PathLike[str] | None = None) -> bytes:
    """`TITAN_HMAC_SECRET`, else the file the engine made in its data dir."""
    base = Path(data_dir or os.environ.get("TITAN_DATA_DIR", "./data"))
    try:
        return read_secret(base, os.environ.get("TITAN_HMAC_SECRET", ""))
    except FileNotFoundError:
        raise FastPathError(f"no TITAN_HMAC_SECRET and no {base / SECRET_FILE}: start the engine first")


def prepare_request(signal_id: str, symbol: str, side: str, quantity: float, order_type: str = "market",
                    **fields: Any) -> dict[str, Any]:
    return {"type": "PREPARE", "signal_id": signal_id, "symbol": symbol, "side": side,
            "quantity": quantity, "order_type": order_type,
            **{k: v for k, v in fields.items() if v is not None}}


def _complete(msg: dict[str, Any]) -> dict[str, Any]:
    msg = dict(msg)
    msg.setdefault("ts", now_ms())
    msg.setdefault("req_id", uuid.uuid4().hex)
    return msg


class _Replies:
    """Replies by req_id, executions in order; shared by both clients."""

    def __init__(self, secret: bytes, verify: bool) -> None:
        self.secret = secret
        self.verify = verify
        self.reader = FrameReader()
        self.by_req: dict[str, dict[str, Any]] = {}
        self.unmatched: collections.deque[dict[str, Any]] = collections.deque()
        self.executions: collections.deque[dict[str, Any]] = collections.deque()

    def feed(self, data: bytes) -> None:
        self.reader.feed(data)
        for frame in self.reader.frames():
            self._take(frame)

    def _take(self, frame: Frame) -> None:
        if self.verify and not mac_ok(self.secret, frame):
            raise ReplySignatureError("a reply's MAC does not match")
        reply = decode_payload(frame.payload)
        if reply.get("type") == "EXECUTION":
            self.executions.append(reply)
        elif isinstance(reply.get("req_id"), str):
            self.by_req[reply["req_id"]] = reply
        else:
            self.unmatched.append(reply)


class FastPathClient:
    """Blocking client; one connection, pipelined."""

    def __init__(self, path: str, secret: bytes, *, timeout: float = 5.0, verify: bool = True) -> None:
        self.path = path
        self.timeout = timeout
        self._replies = _Replies(secret, verify)
        self._secret = secret
        self.sock: socket.socket | None = None

    def connect(self) -> FastPathClient:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)
        return self

    def __enter__(self) -> FastPathClient:
        return self.connect() if self.sock is None else self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, msg: dict[str, Any]) -> str:
        msg = _complete(msg)
        self.send_raw(encode_message(self._secret, msg))
        return msg["req_id"]

    def send_raw(self, data: bytes) -> None:
        assert self.sock is not None, "connect() first"
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ConnectionClosed(f"the engine closed the connection: {exc}") from None

    def _read(self, deadline: float) -> None:
        assert self.sock is not None, "connect() first"
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            data = b""
        if not data:
            raise ConnectionClosed("the engine closed the connection")
        self._replies.feed(data)

    def wait(self, req_id: str, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while req_id not in self._replies.by_req:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no reply to {req_id}")
            self._read(deadline)
        return self._replies.by_req.pop(req_id)

    def recv_unmatched(self, timeout: float | None = None) -> dict[str, Any]:
        """The next reply that carries no req_id (e.g. BAD_FRAME, BAD_SIGNATURE)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._replies.unmatched:
            if time.monotonic() >= deadline:
                raise TimeoutError("no reply")
            self._read(deadline)
        return self._replies.unmatched.popleft()

    def next_execution(self, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._replies.executions:
            if time.monotonic() >= deadline:
                raise TimeoutError("no EXECUTION")
            self._read(deadline)
        return self._replies.executions.popleft()

    def request(self, msg: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        return self.wait(self.send(msg), timeout)

    def prepare(self, signal_id: str, symbol: str, side: str, quantity: float,
                order_type: str = "market", **fields: Any) -> dict[str, Any]:
        return self.request(prepare_request(signal_id, symbol, side, quantity, order_type, **fields))

    def confirm(self, signal_id: str) -> dict[str, Any]:
        return self.request({"type": "CONFIRM", "signal_id": signal_id})

    def abort(self, signal_id: str) -> dict[str, Any]:
        return self.request({"type": "ABORT", "signal_id": signal_id})

    def cancel(self, signal_id: str) -> dict[str, Any]:
        return self.request({"type": "CANCEL", "signal_id": signal_id})

    def ping(self) -> dict[str, Any]:
        return self.request({"type": "PING"})


class AsyncFastPathClient:
    """asyncio client; one connection, pipelined, replies matched by req_id."""

    def __init__(self, path: str, secret: bytes, *, timeout: float = 5.0, verify: bool = True) -> None:
        self.path = path
        self.timeout = timeout
        self._secret = secret
        self._replies = _Replies(secret, verify)
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._executions: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._closed: BaseException | None = None

    async def connect(self) -> AsyncFastPathClient:
        reader, self._writer = await asyncio.open_unix_connection(self.path)
        self._reader_task = asyncio.create_task(self._read_loop(reader))
        return self

    async def __aenter__(self) -> AsyncFastPathClient:
        return await self.connect()

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(262144)
                if not data:
                    raise ConnectionClosed("the engine closed the connection")
                self._replies.feed(data)
                self._dispatch()
        except BaseException as exc:
            self._closed = exc
            error = exc if isinstance(exc, FastPathError) else ConnectionClosed(str(exc))
            for future in self._waiters.values():
                if not future.done():
                    future.set_exception(error)
            raise

    def _dispatch(self) -> None:
        while self._replies.executions:
            self._executions.put_nowait(self._replies.executions.popleft())
        for req_id in list(self._replies.by_req):
            future = self._waiters.pop(req_id, None)
            if future is not None and not future.done():
                future.set_result(self._replies.by_req.pop(req_id))

    async def send(self, msg: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Send; the returned future resolves to the reply."""
        if self._closed is not None:
            raise ConnectionClosed(str(self._closed))
        msg = _complete(msg)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[msg["req_id"]] = future
        assert self._writer is not None, "connect() first"
        self._writer.write(encode_message(self._secret, msg))
        await self._writer.drain()
        return future

    async def request(self, msg: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        future = await self.send(msg)
        return await asyncio.wait_for(future, self.timeout if timeout is None else timeout)

    async def prepare(self, signal_id: str, symbol: str, side: str, quantity: float,
                      order_type: str = "market", **fields: Any) -> dict[str, Any]:
        return await self.request(prepare_request(signal_id, symbol, side, quantity, order_type, **fields))

    async def confirm(self, signal_id: str) -> dict[str, Any]:
        return await self.request({"type": "CONFIRM", "signal_id": signal_id})

    async def abort(self, signal_id: str) -> dict[str, Any]:
        return await self.request({"type": "ABORT", "signal_id": signal_id})

    async def cancel(self, signal_id: str) -> dict[str, Any]:
        return await self.request({"type": "CANCEL", "signal_id": signal_id})

    async def ping(self) -> dict[str, Any]:
        return await self.request({"type": "PING"})

    async def next_execution(self, timeout: float | None = None) -> dict[str, Any]:
        return await asyncio.wait_for(self._executions.get(), self.timeout if timeout is None else timeout)
