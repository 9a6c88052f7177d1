"""The websocket half of a fake exchange: its private stream, served by
aiohttp (ccxt's own dependency) in a thread of its own on a free port.

The venue-specific part is the fake's (`FakeExchange.ws_open`, `ws_receive`,
`ws_events`): how a connection authenticates, what it subscribes to, and how
an order or trade of the fake's account is pushed. Events reach every open
connection in the order the account changed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.support.fake_exchange import FakeExchange

__all__ = ["FakeStream", "StreamConnection"]

_ids = itertools.count(1)


@dataclass
class StreamConnection:
    path: str
    query: dict[str, str]
    id: str = field(default_factory=lambda: f"conn-{next(_ids)}")
    state: dict[str, Any] = field(default_factory=dict)
    outbox: asyncio.Queue | None = None


class FakeStream:
    def __init__(self, venue: FakeExchange) -> None:
        self.venue = venue
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-stream", daemon=True)
        self.connections: list[StreamConnection] = []
        self._sockets: list[web.WebSocketResponse] = []
        self.port = 0
        self.pushed = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> FakeStream:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._connection)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    def drop_connections(self) -> None:
        """Close every open connection (the venue restarting its stream)."""
        for ws in list(self._sockets):
            asyncio.run_coroutine_threadsafe(ws.close(), self.loop).result(5)

    def publish(self, kind: str, item: Any) -> None:
        """From any thread: push an account change to every connection that wants it."""
        for conn in list(self.connections):
            for payload in self.venue.ws_events(conn, kind, item):
                if conn.outbox is not None:
                    self.loop.call_soon_threadsafe(conn.outbox.put_nowait, json.dumps(payload))

    async def _connection(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = StreamConnection(request.path, dict(request.query), outbox=asyncio.Queue())
        refusal = self.venue.ws_open(conn)
        if refusal is not None:
            await ws.send_str(refusal)
            await ws.close()
            return ws
        self.connections.append(conn)
        self._sockets.append(ws)
        writer = asyncio.ensure_future(self._write(ws, conn))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                for reply in self.venue.ws_receive(conn, json.loads(msg.data)):
                    assert conn.outbox is not None
                    conn.outbox.put_nowait(json.dumps(reply))
        finally:
            writer.cancel()
            self.connections.remove(conn)
            self._sockets.remove(ws)
            self.venue.ws_closed(conn)
        return ws

    async def _write(self, ws: web.WebSocketResponse, conn: StreamConnection) -> None:
        assert conn.outbox is not None
        while True:
            text = await conn.outbox.get()
            await ws.send_str(text)
            self.pushed += 1
