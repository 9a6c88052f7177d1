"""The NATS bridge actor: the engine's only NATS client.

nats-py runs in an `AsyncHost` loop thread; connection events come back to
the actor thread through the host's socketpair. The bridge connects to
`url` and reconnects forever with backoff (also when the first connect
fails: a nats-server that starts later is picked up). Its status shows
whether it is connected.

Commands, events and market data come with the NATS issue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from titan_actors.aiohost import AsyncHost
from titan_actors.base import TitanActor, count_boot

__all__ = ["NatsBridge", "connect_options"]

log = logging.getLogger(__name__)


def connect_options(config: dict[str, Any]) -> dict[str, Any]:
    """nats-py `connect()` keyword arguments from the `[nats]` config."""
    opts: dict[str, Any] = {
        "servers": [config["url"]],
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "name": "titan-execution",
    }
    if config.get("user"):
        opts["user"], opts["password"] = config["user"], config.get("password", "")
    if config.get("token"):
        opts["token"] = config["token"]
    if config.get("creds_file"):
        opts["user_credentials"] = config["creds_file"]
    if config.get("nkey_seed_file"):
        opts["nkeys_seed"] = config["nkey_seed_file"]
    if config.get("tls_ca_file") or config.get("tls_cert_file"):
        import ssl

        ctx = ssl.create_default_context(cafile=config.get("tls_ca_file") or None)
        if config.get("tls_cert_file"):
            ctx.load_cert_chain(config["tls_cert_file"], config.get("tls_key_file") or None)
        opts["tls"] = ctx
    return opts


class NatsBridge(TitanActor):
    needs = ("gateway", "risk", "positions", "venue:")

    def on_start(self) -> None:
        self.store = self.open_store("bridge")
        self.boots = count_boot(self.store)
        self.connected = False
        self.connects = 0
        self.last_error = ""
        self.nc: Any = None
        self.aio = AsyncHost(name="titan-nats")
        self.aio.submit(self._connect_forever(), self._on_connect_done)

    async def _connect_forever(self) -> Any:
        import nats

        opts = connect_options(self.config)
        opts["disconnected_cb"] = self._cb(self._on_disconnected)
        opts["reconnected_cb"] = self._cb(self._on_reconnected)
        opts["error_cb"] = self._error_cb
        delay = 0.1
        while True:
            try:
                return await nats.connect(**opts)
            except Exception as exc:  # no server yet: keep trying, the engine runs on
                self.aio.post(self._note_error, f"connect: {exc!r}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _cb(self, fn: Any) -> Any:
        async def callback() -> None:
            self.aio.post(fn)

        return callback

    async def _error_cb(self, exc: Exception) -> None:
        self.aio.post(self._note_error, repr(exc))

    def _on_connect_done(self, nc: Any, error: BaseException | None) -> None:
        if error is not None:
            raise error
        self.nc, self.connected = nc, True
        self.connects += 1
        log.info("nats bridge connected to %s", self.config["url"])

    def _on_disconnected(self) -> None:
        self.connected = False

    def _on_reconnected(self) -> None:
        self.connected = True
        self.connects += 1

    def _note_error(self, text: str) -> None:
        self.last_error = text

    def watch_fds(self) -> list[int]:
        return [self.aio.fileno()]

    def on_watch(self, fd: int) -> None:
        if fd == self.aio.fileno():
            self.aio.drain()

    def on_stop(self) -> None:
        if self.nc is not None:
            future = asyncio.run_coroutine_threadsafe(self.nc.close(), self.aio.loop)
            try:
                future.result(timeout=2)
            except Exception as exc:
                log.warning("nats bridge: close failed: %r", exc)
        self.aio.stop()

    def status_detail(self) -> dict[str, Any]:
        return {
            "boots": self.boots,
            "url": self.config["url"],
            "connected": self.connected,
            "connects": self.connects,
            "last_error": self.last_error,
        }
