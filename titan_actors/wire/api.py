"""The HTTP API's models and its OpenAPI document (shared/spec/http-api.md), pure.

The request bodies and query strings are `domain.schema.Model`s — the same
objects the HTTP actor, the gateway and the NATS bridge validate with — and
`openapi()` builds the OpenAPI 3.1 document served at `/openapi.json` from
them, so the document cannot drift from what is checked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from titan_actors.domain.schema import Field, Model
from titan_actors.domain.signals import COMMON, HEARTBEAT, ORDER, SCOPE

__all__ = [
    "ERROR",
    "MAX_BODY",
    "OPERATOR_MODELS",
    "READ_QUERIES",
    "WEBHOOK",
    "openapi",
    "webhook_request",
]

#: The largest webhook (or operator) body, bytes.
MAX_BODY = 64 * 1024

_REASON = Field("reason", "string", "why; shown in events and the status", required=True, min_length=1,
                max_length=512)
_OPERATOR = Field("operator", "string", "who", required=True, min_length=1, max_length=128)

#: Bodies of the operator commands (NATS subjects and HTTP endpoints alike;
#: a NATS body also carries its `ts` and `nonce`).
OPERATOR_MODELS = {
    "halt": Model("Halt", "Set the scope's trading state to HALTED or REDUCING.", (
        Field("mode", "string", "HALTED: nothing is sent; REDUCING: only what reduces a position",
              required=True, enum=("HALTED", "REDUCING")), _REASON, _OPERATOR, SCOPE), extra=True),
    "resume": Model("Resume", "Lift the scope's halt (ACTIVE).", (_REASON, _OPERATOR, SCOPE), extra=True),
    "cancel_all": Model("CancelAll", "Cancel every resting order of the scope at every venue.",
                        (_REASON, _OPERATOR, SCOPE), extra=True),
    "flatten": Model("Flatten", "Cancel the scope's resting orders, then close each of its positions "
                     "with a reduce-only market order.", (_REASON, _OPERATOR, SCOPE), extra=True),
}

ENTRY_ZONE = Field("entry_zone", "numbers", "1-5 limit prices: that many limit orders of the one signal, "
                   "the quantity split equally (rounded down to the step, the remainder on the first); "
                   "without it the order is a market order", positive=True, min_items=1, max_items=5)

#: `POST /webhook`: a FastPath request (`ts` optional) with the alerting
#: tools' additions; any other field is kept with the signal.
WEBHOOK = Model(
    "Webhook",
    "A FastPath request (type PREPARE, CONFIRM, ABORT or CANCEL) with `direction`, `entry_zone`, an "
    "optional `ts` and, with [sizing] risk_per_trade_pct, an optional `quantity` (then `stop_loss` is "
    "required). Other fields are stored with the signal.",
    (*(f if f.name != "ts" else Field(f.name, f.kind, f.doc + "; optional here") for f in COMMON.fields),
     *(f for f in ORDER.fields if f.name not in ("signal_id", "symbol", "order_type")),
     Field("symbol", "string", ORDER.field("symbol").doc, max_length=40),
     Field("order_type", "string", "market or limit; left out, it follows entry_zone",
           enum=("market", "limit")),
     ENTRY_ZONE, *(replace(f, required=False, doc=f"HEARTBEAT: {f.doc}") for f in HEARTBEAT.fields)),
    extra=True,
)

_WEBHOOK_FIELDS = frozenset(f.name for f in WEBHOOK.fields)


def webhook_request(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], tuple[Any, ...]] | str:
    """A webhook body as (the FastPath request, the signal's extra fields,
    the ladder's prices), or the `INVALID` reason. `entry_zone` becomes the
    limit price (several: a ladder, one limit order per price); without it
    (and without `order_type`) a PREPARE is a market order."""
    request = {k: v for k, v in body.items() if k in _WEBHOOK_FIELDS and k != "entry_zone"}
    extra = {k: v for k, v in body.items() if k not in _WEBHOOK_FIELDS}
    if body.get("type") != "PREPARE":
        return request, {}, ()
    zone = body.get("entry_zone")
    if zone is None:
        request.setdefault("order_type", "market")
        return request, extra, ()
    problem = ENTRY_ZONE.problem(zone)
    if problem is not None:
        return f"entry_zone: {problem}"
    if body.get("order_type", "limit") != "limit" or "price" in body:
        return "entry_zone: its prices are the limit prices; leave out price and order_type (or say limit)"
    return {**request, "order_type": "limit", "price": zone[0]}, extra, tuple(zone) if len(zone) > 1 else ()


_DATE = Field("start_date", "string", "ISO-8601 date or date-time (UTC when no offset)", max_length=40)
_PAGE = (Field("limit", "integer", "at most this many items (default 100)", minimum=1, maximum=1000),
         Field("offset", "integer", "skip this many (default 0)", minimum=0))
_SYMBOL = Field("symbol", "string", "only this symbol", max_length=40)

#: Query strings of the read endpoints (values arrive as text and are
#: converted before the model checks them).
READ_QUERIES = {
    "/api/trades": Model("TradesQuery", "Filled orders.", (
        _DATE, Field("end_date", "string", _DATE.doc, max_length=40), _SYMBOL, *_PAGE)),
    "/api/orders": Model("OrdersQuery", "Orders.", (
        Field("status", "string", "open, final or all (default)", enum=("open", "final", "all")),
        _SYMBOL, *_PAGE)),
    "/api/positions/active": Model("ActiveQuery", "Open positions.", ()),
    "/api/positions/history": Model("HistoryQuery", "Closed positions.", (
        _DATE, Field("end_date", "string", _DATE.doc, max_length=40), _SYMBOL, *_PAGE)),
    "/api/performance/summary": Model("PerformanceQuery", "Performance of closed positions.", (
        _DATE, Field("end_date", "string", _DATE.doc, max_length=40), _SYMBOL)),
    "/api/regime/snapshots": Model("RegimeQuery", "Signals that carried a regime_vector.", (
        _DATE, Field("end_date", "string", _DATE.doc, max_length=40), _SYMBOL, *_PAGE)),
}

ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string"}, "reason": {"type": "string"}}}

_REPLY = {"type": "object", "required": ["type", "ts"], "properties": {
    "type": {"enum": ["PREPARED", "ACCEPTED", "ABORTED", "CANCELED", "PONG", "HEARTBEAT_OK", "REJECTED"]},
    "signal_id": {"type": "string"}, "req_id": {"type": "string"}, "ts": {"type": "integer"},
    "code": {"type": "string"}, "reason": {"type": "string"}, "duplicate": {"type": "boolean"}}}

_HEALTH = {"type": "object", "required": ["status", "ts", "components"], "properties": {
    "status": {"enum": ["ok", "degraded"]}, "ts": {"type": "string"}, "components": {"type": "object"}}}

_LIST = {"type": "object", "required": ["total", "limit", "offset"], "properties": {
    "total": {"type": "integer", "minimum": 0}, "limit": {"type": "integer"}, "offset": {"type": "integer"}}}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **extra}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "not a JSON object", 401: "no or wrong credentials", 403: "a read token on an operator "
            "endpoint", 413: "body over 64 KiB", 422: "a field fails validation"}
    return {str(code): _json({"$ref": "#/components/schemas/Error"}, text[code]) for code in codes}


def _query(model: Model) -> list[dict[str, Any]]:
    return [{"name": f.name, "in": "query", "required": f.required, "description": f.doc,
             "schema": {k: v for k, v in f.json_schema().items() if k != "description"}}
            for f in model.fields]


def openapi(*, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every endpoint the HTTP actor serves."""
    operator = {kind: {
        "post": {
            "summary": model.doc, "security": [{"operator": []}],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": model.json_schema()}}},
            "responses": {"200": _json({"type": "object"}, "the effect, as titan's CLI shows it"),
                          **_errors(400, 401, 403, 413, 422),
                          "503": _json({"$ref": "#/components/schemas/Error"}, "the engine part behind the "
                                       "command did not answer; the effect is not known")},
        }} for kind, model in OPERATOR_MODELS.items()}
    items = {"/api/trades": "trades", "/api/orders": "orders", "/api/positions/history": "positions",
             "/api/regime/snapshots": "snapshots"}
    read: dict[str, Any] = {}
    for path, model in READ_QUERIES.items():
        body: dict[str, Any] = {"type": "object"}
        if path in items:
            body = {**_LIST, "properties": {**_LIST["properties"], items[path]: {
                "type": "array", "items": {"type": "object"}}}, "required": [*_LIST["required"], items[path]]}
        read[path] = {"get": {"summary": model.doc, "security": [{"read": []}, {"operator": []}],
                              "parameters": _query(model),
                              "responses": {"200": _json(body, "the items"), **_errors(401, 422)}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Titan execution engine", "version": version,
                 "description": "shared/spec/http-api.md; the webhook body is a FastPath request "
                                "(shared/spec/fastpath-ipc.md)."},
        "paths": {
            "/health": {"get": {"summary": "Whether the engine accepts orders", "responses": {
                "200": _json(_HEALTH, "accepting orders"), "503": _json(_HEALTH, "degraded")}}},
            "/metrics": {"get": {"summary": "Prometheus text exposition", "responses": {
                "200": {"description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _json({"type": "object"}, "OpenAPI 3.1")}}},
            "/webhook": {"post": {
                "summary": "A FastPath request from an alerting tool",
                "parameters": [
                    {"name": "x-signature", "in": "header", "required": True, "schema": {"type": "string"},
                     "description": "lowercase hex HMAC-SHA256(raw body, webhook secret)"},
                    {"name": "x-source", "in": "header", "required": True, "schema": {"type": "string"},
                     "description": "one of [http] webhook_sources"}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": WEBHOOK.json_schema()}}},
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Reply"}, "the FastPath reply (REJECTED "
                                 "included)"),
                    **_errors(400, 401, 413),
                    "503": _json({"$ref": "#/components/schemas/Reply"}, "BUSY or INTERNAL: resending is "
                                 "safe", headers={"Retry-After": {"schema": {"type": "integer"}}})}}},
            "/api/halt": operator["halt"], "/api/resume": operator["resume"],
            "/api/orders/cancel-all": operator["cancel_all"], "/api/positions/flatten": operator["flatten"],
            **read,
        },
        "components": {
            "schemas": {"Error": ERROR, "Reply": _REPLY},
            "securitySchemes": {"read": {"type": "http", "scheme": "bearer"},
                                "operator": {"type": "http", "scheme": "bearer"}},
        },
    }
