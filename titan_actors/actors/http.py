"""The HTTP actor: the engine's HTTP listener (shared/spec/http-api.md).

It serves the spec's open endpoints — `GET /health` and `GET /metrics` — on
aiohttp, in its worker's asyncio loop (`AsyncHost`), at `[http] listen`
(`TITAN_HTTP_LISTEN`; `off` disables it; port 0 picks a free one; the bound
address is `http_url` in its status and at the top of `titan status --json`).

Every second it asks the root for the tree's status (`TreeStatusRequest`,
as `titan status` does) and keeps the answer; a request is answered from
that snapshot and never waits on another actor. `/health` is the verdict of
`domain.health` (the one `titan status` shows): 200 with `status: "ok"`, or
503 with `status: "degraded"` and each failing component named with its
reason — also when no status round has come back for 3 s. `/metrics` is
Prometheus' text format (`prometheus_client`), the families listed in
docs/observability.md, built from the same snapshot.

Failure: a port that cannot be bound is logged and shown in the status
(`error`), and the engine trades on without HTTP; the actor does not crash
over it (a restart would not free the port). A handler that raises crashes
the actor; its supervisor restarts it, and it binds again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from typing import Any

import orjson

from titan_actors.domain.health import Health, health
from titan_actors.domain.money import json_default
from titan_actors.messages import TreeStatus, TreeStatusRequest
from titan_actors.runtime.actor import TitanActor, count_boot
from titan_actors.runtime.procs import usage
from titan_actors.wire.metrics import render_metrics

__all__ = ["HttpActor", "parse_listen"]

log = logging.getLogger(__name__)

_POLL = "http:poll"
_POLL_S = 1.0
#: With no status round back for this long, the engine is not known to be healthy.
_STALE_S = 3.0


def parse_listen(value: str) -> tuple[str, int] | None:
    """`host:port` → (host, port); `off` → None. Raises ValueError otherwise."""
    if value == "off":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port or off, got {value!r}")
    return host.strip("[]"), int(port)


class HttpActor(TitanActor):
    """See the module docstring."""

    def on_start(self) -> None:
        self.store = self.open_store("http", durable=False)
        self.boots = count_boot(self.store)
        self.expected: set[str] = set(self.config.get("expected_roles", ()))
        self.url = ""
        self.error = ""
        self.runner: Any = None
        self.snapshot: tuple[float, Health, TreeStatus | None] = (0.0, Health(False, {
            "actors": {"ok": False, "reason": "no status of the tree yet"}}), None)
        self.served = {"health": 0, "metrics": 0}
        self.workers: dict[str, tuple[float, int]] = {}  # worker → (CPU seconds, RSS bytes), per round
        self.aio = self.async_host()
        address = parse_listen(str(self.config.get("listen", "off")))
        if address is not None:
            self.aio.submit(self._serve(*address), self._on_bound)
        self.after(0.0, _POLL)

    def release(self) -> None:
        self.aio.stop()
        if self.runner is not None:
            self.aio.submit(self.runner.cleanup())

    def on_wakeup(self, payload: Any) -> None:
        if payload == _POLL:
            self.tell("root", TreeStatusRequest(timeout_s=1.5), via="thespian")
            self.after(_POLL_S, _POLL)

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, TreeStatus):
            actors = [{"role": a.role, "state": a.state, "detail": a.detail} for a in msg.actors]
            workers: dict[str, tuple[float, int]] = {}
            for actor in msg.actors:
                if actor.worker and actor.worker not in workers:
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        workers[actor.worker] = usage(actor.pid)
            self.workers = workers
            self.snapshot = (time.monotonic(), health(actors, msg.missing, self.expected), msg)
        else:
            super().handle(msg, sender)

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, "http_url": self.url, "error": self.error, **self.served}

    # --- the listener (in the loop thread) ----------------------------------------------

    async def _serve(self, host: str, port: int) -> tuple[Any, str]:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        bound_host, bound_port = runner.addresses[0][:2]
        return runner, f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}"

    def _on_bound(self, result: Any, error: BaseException | None) -> None:
        if error is not None:
            self.error = f"cannot listen on {self.config.get('listen')}: {error}"
            log.error("http: %s; the engine runs on without its HTTP listener", self.error)
            return
        self.runner, self.url = result
        log.info("http: listening on %s", self.url)

    def _verdict(self) -> Health:
        at, verdict, _tree = self.snapshot
        age = time.monotonic() - at
        if age > _STALE_S:
            return Health(False, {**verdict.components, "engine": {
                "ok": False, "reason": f"no status from the actor tree for {age:.0f}s"}})
        return verdict

    async def _health(self, _request: Any) -> Any:
        from aiohttp import web

        self.served["health"] += 1
        verdict = self._verdict()
        body = {"status": "ok" if verdict.ready else "degraded",
                "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "components": verdict.components}
        return web.Response(body=orjson.dumps(body, default=json_default),
                            status=200 if verdict.ready else 503, content_type="application/json")

    async def _metrics(self, _request: Any) -> Any:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST

        self.served["metrics"] += 1
        _at, _verdict, tree = self.snapshot
        body = render_metrics(tree, self._verdict(), self.expected, self.workers)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
