"""The HTTP actor: the engine's HTTP listener (shared/spec/http-api.md).

It serves the spec on aiohttp, in its worker's asyncio loop (`AsyncHost`),
at `[http] listen` (`TITAN_HTTP_LISTEN`; `off` disables it; port 0 picks a
free one; the bound address is `http_url` in its status and at the top of
`titan status --json`).

**Open endpoints.** Every second it asks the root for the tree's status
(`TreeStatusRequest`, as `titan status` does) and keeps the answer;
`/health` and `/metrics` are answered from that snapshot and never wait on
another actor. `/health` is the verdict of `domain.health` (the one
`titan status` shows): 200 with `status: "ok"`, or 503 with
`status: "degraded"` and each failing component named with its reason —
also when no status round has come back for 3 s. `/metrics` is
Prometheus' text format (docs/observability.md). `/openapi.json` is built
from the models that validate the requests (`wire.api`).

**Webhook.** `POST /webhook`: body at most 64 KiB (413), `x-signature` the
hex HMAC-SHA256 of the raw body with the webhook secret and `x-source` one
of `[http] webhook_sources` (401, compared in constant time), a JSON object
(400); then the gateway handles it as a FastPath request (`WebhookRequest`:
the same checks, risk, idempotency and replies) and its reply is the body:
200, or 503 with `Retry-After` for `BUSY` and `INTERNAL`.

**Operator endpoints** (`Authorization: Bearer <operator token>`; a read
token gets 403, none or another 401): halt and resume go to the risk
guard, cancel-all and flatten to every venue adapter of the scope
(`actors.operator`), and answer as the NATS operator commands do. Bodies
that fail their model get 422 naming the field.

Tokens: `[http] api_token` / `operator_token` (`TITAN_API_TOKEN`,
`TITAN_OPERATOR_TOKEN`), else `<data>/api.token` and `<data>/operator.token`
(0600, made by the engine at start); none of them is ever logged.

Failure: a port that cannot be bound is logged and shown in the status
(`error`), and the engine trades on without HTTP; the actor does not crash
over it (a restart would not free the port). A request the engine part
behind it does not answer in time gets 503 (`UNAVAILABLE`, or the FastPath
`INTERNAL` for the webhook: resending is safe). A handler that raises
crashes the actor; its supervisor restarts it, and it binds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from titan_actors.actors.operator import (
    OPERATOR_ANSWERS,
    KillSwitchRounds,
    OperatorRefusal,
    operator_answer,
    operator_command,
)
from titan_actors.domain.health import Health, health
from titan_actors.domain.money import json_default
from titan_actors.messages import (
    CommandReply,
    LedgerQuery,
    SetTradingState,
    TreeStatus,
    TreeStatusRequest,
    WebhookRequest,
)
from titan_actors.runtime.actor import TitanActor, count_boot
from titan_actors.runtime.clock import iso, now_ms, parse_iso
from titan_actors.runtime.procs import usage
from titan_actors.secret import API_TOKEN_FILE, OPERATOR_TOKEN_FILE, read_secret
from titan_actors.wire.api import MAX_BODY, READ_QUERIES, openapi
from titan_actors.wire.metrics import render_metrics

__all__ = ["HttpActor", "parse_listen"]

log = logging.getLogger(__name__)

_POLL = "http:poll"
_POLL_S = 1.0
#: With no status round back for this long, the engine is not known to be healthy.
_STALE_S = 3.0
#: How long a request waits for the engine part behind it.
_ANSWER_S = 10.0
_KILL_SWITCH_S = 8.0
_ERRORS = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
           405: "METHOD_NOT_ALLOWED", 413: "TOO_LARGE", 422: "INVALID", 503: "UNAVAILABLE"}


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
        self.served = {"health": 0, "metrics": 0, "webhook": 0, "operator": 0, "read": 0, "refused": 0}
        assert self.engine is not None
        data_dir = self.engine.data_dir
        cfg = self.config
        # Tokens and secrets: bytes, compared in constant time, never logged.
        self.api_token = read_secret(data_dir, cfg.get("api_token", ""), name=API_TOKEN_FILE) \
            if address_of(cfg) else b""
        self.operator_token = read_secret(data_dir, cfg.get("operator_token", ""), name=OPERATOR_TOKEN_FILE) \
            if address_of(cfg) else b""
        self.webhook_secret = cfg["webhook_secret"].encode() if cfg.get("webhook_secret") \
            else read_secret(data_dir, cfg.get("hmac_secret", ""))
        self.sources = frozenset(cfg.get("webhook_sources", ("titan_dashboard",)))
        self.venues = frozenset(cfg.get("venues", ()))
        self.futures: dict[str, asyncio.Future[Any]] = {}  # loop thread only
        self.kill_switches = KillSwitchRounds(_KILL_SWITCH_S)
        self.workers: dict[str, tuple[float, int]] = {}  # worker → (CPU seconds, RSS bytes), per round
        self.aio = self.async_host()
        address = address_of(self.config)
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
            for corr, reply in self.kill_switches.expired():
                self._answer(corr, reply)
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
        elif isinstance(msg, CommandReply):
            self._answer(msg.corr, msg.reply)
        elif isinstance(msg, OPERATOR_ANSWERS):
            if (answer := operator_answer(msg, self.kill_switches)) is not None:
                self._answer(*answer)
        else:
            super().handle(msg, sender)

    def _answer(self, corr: str, reply: dict[str, Any]) -> None:
        """The engine's answer to the HTTP request waiting on `corr` (if it still waits)."""
        self.aio.loop.call_soon_threadsafe(self._resolve, corr, reply)

    def _resolve(self, corr: str, reply: dict[str, Any]) -> None:
        future = self.futures.get(corr)
        if future is not None and not future.done():
            future.set_result(reply)

    async def _ask(self, send: Callable[[str], None], timeout_s: float = _ANSWER_S) -> dict[str, Any] | None:
        """Loop thread: run `send(corr)` as a handler of the actor, then wait
        for the answer it leads to; None when none comes in time."""
        corr = uuid.uuid4().hex
        future = self.futures[corr] = self.aio.loop.create_future()
        try:
            self.aio.post(send, corr)
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            self.futures.pop(corr, None)

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, "http_url": self.url, "error": self.error, **self.served}

    # --- the listener (in the loop thread) ----------------------------------------------

    async def _serve(self, host: str, port: int) -> tuple[Any, str]:
        from aiohttp import web

        app = web.Application(client_max_size=MAX_BODY, middlewares=[_make_middleware()])
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_post("/webhook", self._webhook)
        for path, kind in (("/api/halt", "halt"), ("/api/resume", "resume"),
                           ("/api/orders/cancel-all", "cancel_all"), ("/api/positions/flatten", "flatten")):
            app.router.add_post(path, self._operator(kind))
        for path in READ_QUERIES:
            app.router.add_get(path, self._reader(path))
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
                "ts": iso(now_ms()),
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

    async def _openapi(self, _request: Any) -> Any:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("titan-execution")
        except PackageNotFoundError:
            ours = "0"
        return _json(openapi(version=ours))

    # --- the webhook ------------------------------------------------------------------

    async def _webhook(self, request: Any) -> Any:
        self.served["webhook"] += 1
        raw = await request.read()  # over 64 KiB: 413, by aiohttp's client_max_size
        signature = request.headers.get("x-signature", "")
        expected = hmac.new(self.webhook_secret, raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.lower().encode("utf-8", "replace")):
            return self._refused(401, "BAD_SIGNATURE", "x-signature: missing or wrong")
        if request.headers.get("x-source", "") not in self.sources:
            return self._refused(401, "BAD_SOURCE", "x-source: not an allowed source")
        body = _json_object(raw)
        if body is None:
            return self._refused(400, "BAD_REQUEST", "the body is not a JSON object")
        reply = await self._ask(lambda corr: self._to_gateway(corr, body))
        if reply is None:
            reply = {"type": "REJECTED", "code": "INTERNAL", "ts": int(time.time() * 1000),
                     "reason": "no answer in time; the outcome is not known yet: resend"}
        if reply.get("type") == "REJECTED" and reply.get("code") in ("BUSY", "INTERNAL"):
            return _json(reply, 503, headers={"Retry-After": "1"})
        return _json(reply)

    def _to_gateway(self, corr: str, body: dict[str, Any]) -> None:
        if not self.tell("gateway", WebhookRequest(body, corr)):
            self._answer(corr, {"type": "REJECTED", "code": "BUSY", "ts": int(time.time() * 1000),
                                "reason": "the gateway is restarting; resend",
                                **({"signal_id": body["signal_id"]} if isinstance(body.get("signal_id"), str)
                                   else {})})

    # --- operator endpoints -------------------------------------------------------------

    def _bearer(self, request: Any) -> str:
        """Who the request's token says it is: "operator", "read" or ""."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        given = token.strip().encode("utf-8", "replace")
        if scheme.lower() != "bearer" or not given:
            return ""
        if self.operator_token and hmac.compare_digest(given, self.operator_token):
            return "operator"
        if self.api_token and hmac.compare_digest(given, self.api_token):
            return "read"
        return ""

    def _operator(self, kind: str) -> Any:
        async def endpoint(request: Any) -> Any:
            who = self._bearer(request)
            if who != "operator":
                return self._refused(403 if who == "read" else 401, _ERRORS[403 if who == "read" else 401],
                                     "this endpoint needs the operator token" if who == "read"
                                     else "Authorization: Bearer <operator token> missing or wrong")
            self.served["operator"] += 1
            body = _json_object(await request.read())
            if body is None:
                return self._refused(400, "BAD_REQUEST", "the body is not a JSON object")
            command = operator_command(kind, body, self.venues, default_operator="http")
            if isinstance(command, OperatorRefusal):
                return self._refused(422, "INVALID", command.reason)
            if command.kind in ("halt", "resume"):
                send = lambda corr: self._tell_or_fail(corr, "risk", SetTradingState(  # noqa: E731
                    command.mode, command.scope, command.reason, command.operator, corr))
            else:
                send = lambda corr: self.kill_switches.start(self, corr, command, sorted(self.venues))  # noqa: E731
            reply = await self._ask(send)
            if reply is None or "error" in reply:
                return _json(reply or {"error": "UNAVAILABLE", "reason": "the engine part behind this "
                                       "command did not answer in time; its effect is not known"}, 503)
            return _json(reply)
        return endpoint

    # --- read endpoints ------------------------------------------------------------

    def _reader(self, path: str) -> Any:
        async def endpoint(request: Any) -> Any:
            if not self._bearer(request):
                return self._refused(401, "UNAUTHORIZED",
                                     "Authorization: Bearer <read token> missing or wrong")
            self.served["read"] += 1
            params: dict[str, Any] = {k: _int_or_text(v) if k in ("limit", "offset") else v
                                      for k, v in request.query.items()}
            problem = READ_QUERIES[path].problem(params)
            for name in ("start_date", "end_date"):
                if problem is None and name in params:
                    try:
                        parse_iso(params[name])
                    except ValueError:
                        problem = f"{name}: not an ISO-8601 date or date-time"
            if problem is not None:
                return self._refused(422, "INVALID", problem)
            reply = await self._ask(lambda corr: self._tell_or_fail(corr, "ledger", LedgerQuery(
                path, params, corr)))
            if reply is None or "error" in reply:
                status = 422 if reply and reply["error"] == "INVALID" else 503
                return _json(reply or {"error": "UNAVAILABLE", "reason": "the ledger did not answer in time"},
                             status)
            return _json(reply)
        return endpoint

    def _tell_or_fail(self, corr: str, role: str, msg: Any) -> None:
        if not self.tell(role, msg):
            self._answer(corr, {"error": "UNAVAILABLE", "reason": f"{role} is restarting; try again"})

    def _refused(self, status: int, code: str, reason: str) -> Any:
        self.served["refused"] += 1
        return _json({"error": code, "reason": reason}, status)


def address_of(config: dict[str, Any]) -> tuple[str, int] | None:
    return parse_listen(str(config.get("listen", "off")))


def _json(body: Any, status: int = 200, *, headers: dict[str, str] | None = None) -> Any:
    from aiohttp import web

    return web.Response(body=orjson.dumps(body, default=json_default), status=status,
                        content_type="application/json", headers=headers)


def _int_or_text(value: str) -> int | str:
    try:
        return int(value) if len(value) < 20 else value
    except ValueError:
        return value


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _make_middleware() -> Any:
    from aiohttp import web

    @web.middleware
    async def json_errors(request: Any, handler: Any) -> Any:
        """aiohttp's own refusals (404, 405, 413, ...) as the spec's JSON errors."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _json({"error": _ERRORS.get(exc.status, "ERROR"), "reason": exc.reason}, exc.status,
                         headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"})
    return json_errors
