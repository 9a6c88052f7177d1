"""The HTTP API's doors (shared/spec/http-api.md): the webhook — one more
door into the FastPath flow, with its own status codes — the operator
endpoints behind their token, and the OpenAPI document."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.engine import FAST_SUPERVISION, RunningEngine, wait_for
from tests.support.nats import read_stream
from titan_actors.domain.ids import client_order_id

SOURCE = {"x-source": "titan_dashboard"}


def call(url: str, *, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as reply:
            return reply.status, json.loads(reply.read()), dict(reply.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def base(engine: RunningEngine) -> str:
    return wait_for(lambda: engine.status().get("http_url"), 10, 0.1, "the HTTP listener bound")


def hook(engine: RunningEngine, fields: dict[str, Any], *, secret: bytes | None = None,
         source: str = "titan_dashboard", raw: bytes | None = None) -> tuple[int, dict[str, Any], dict]:
    body = raw if raw is not None else json.dumps(fields).encode()
    signature = hmac.new(secret or engine.secret, body, hashlib.sha256).hexdigest()
    return call(base(engine) + "/webhook", method="POST", body=body,
                headers={"x-signature": signature, "x-source": source, "Content-Type": "application/json"})


def token(engine: RunningEngine, name: str) -> str:
    return (engine.data_dir / f"{name}.token").read_text().strip()


def operator(engine: RunningEngine, path: str, fields: dict[str, Any], *, bearer: str | None = None
             ) -> tuple[int, dict[str, Any], dict]:
    return call(base(engine) + path, method="POST", body=json.dumps(fields).encode(),
                headers={"Authorization": f"Bearer {bearer or token(engine, 'operator')}"})


def test_the_webhook_answers_every_status_code_of_the_spec(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "\n[ipc]\nrequest_timeout_ms = 500\n").start()
    try:
        prepare = {"type": "PREPARE", "signal_id": "wh-1", "symbol": "BTCUSDT", "direction": 1,
                   "quantity": 0.01, "req_id": "r1"}
        body = json.dumps(prepare).encode()
        url = base(engine) + "/webhook"
        assert call(url, method="POST", body=body, headers=SOURCE)[:2] == (
            401, {"error": "BAD_SIGNATURE", "reason": "x-signature: missing or wrong"})
        assert hook(engine, prepare, secret=b"x" * 32)[0] == 401
        assert hook(engine, prepare, source="somebody")[1]["error"] == "BAD_SOURCE"
        assert hook(engine, {}, raw=b"{" + b" " * 70_000 + b"}")[:2][0] == 413
        assert hook(engine, {}, raw=b"not json")[:2] == (400, {"error": "BAD_REQUEST",
                                                             "reason": "the body is not a JSON object"})
        assert hook(engine, {}, raw=b"[1, 2]")[0] == 400
        status, reply, _ = hook(engine, prepare)
        assert status == 200 and reply["type"] == "PREPARED" and reply["req_id"] == "r1", reply
        assert reply["order"]["side"] == "buy" and reply["order"]["order_type"] == "market"
        status, reply, _ = hook(engine, {"type": "PREPARE", "signal_id": "wh-bad", "symbol": "BTCUSDT",
                                         "side": "buy", "quantity": -1})
        assert status == 200 and reply["code"] == "INVALID" and reply["reason"].startswith("quantity:")
        status, reply, _ = hook(engine, {"type": "CONFIRM", "signal_id": "wh-1"})  # no ts: allowed here
        assert status == 200 and reply["type"] == "ACCEPTED", reply
        status, reply, _ = hook(engine, {"type": "CONFIRM", "signal_id": "wh-1"})
        assert status == 200 and reply["type"] == "ACCEPTED" and reply["duplicate"] is True
        stale = {"type": "CONFIRM", "signal_id": "wh-2", "ts": int(time.time() * 1000) - 60_000}
        assert hook(engine, stale)[1]["code"] == "STALE", "a ts that is sent is held to the window"
        engine.pause("risk")  # nothing answers the PREPARE: INTERNAL, resending is safe
        try:
            status, reply, headers = hook(engine, {**prepare, "signal_id": "wh-3"})
            assert status == 503 and reply["code"] == "INTERNAL" and headers["Retry-After"] == "1"
        finally:
            engine.resume("risk")
        status, reply, _ = wait_for(lambda: (r := hook(engine, {**prepare, "signal_id": "wh-3"}))[0] == 200
                                    and r, 10, 0.2, "answered once the risk guard is back")
        assert reply["type"] == "PREPARED"
        assert engine.venue()["submitted"] == 1, "one order: the duplicate CONFIRM sent nothing"
    finally:
        engine.stop()


def test_a_webhook_and_a_fastpath_request_with_the_same_signal_id_make_one_order(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            assert hook(engine, {"type": "PREPARE", "signal_id": "both-1", "symbol": "BTCUSDT",
                                 "side": "sell", "quantity": 0.02})[1]["type"] == "PREPARED"
            again = client.prepare("both-1", "BTCUSDT", "sell", 0.02)
            assert again["type"] == "PREPARED" and again["duplicate"] is True
            assert client.confirm("both-1")["type"] == "ACCEPTED"
            status, reply, _ = hook(engine, {"type": "CONFIRM", "signal_id": "both-1"})
            assert status == 200 and reply["duplicate"] is True
            # And the other way round.
            assert client.prepare("both-2", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
            assert hook(engine, {"type": "CONFIRM", "signal_id": "both-2"})[1]["type"] == "ACCEPTED"
            assert client.confirm("both-2")["duplicate"] is True
        assert engine.venue()["submitted"] == 2 and engine.venue()["orders_placed"] == 2
    finally:
        engine.stop()


def test_the_webhook_sizes_by_risk_takes_an_entry_zone_and_keeps_the_signals_other_fields(
        tmp_path: Path) -> None:
    config = FAST_SUPERVISION + "\n[sizing]\nrisk_per_trade_pct = 1.0\nequity = 10000\n"
    engine = RunningEngine(tmp_path, config).start()
    try:
        engine.control({"cmd": "price", "symbol": "BTCUSDT", "bid": 59990, "ask": 60010, "last": 60000})
        # market: entry is the arrival price 60000; 10000 * 1 % / |60000 - 59000| = 0.1
        status, reply, _ = hook(engine, {"type": "PREPARE", "signal_id": "sz-1", "symbol": "BTCUSDT",
                                         "direction": 1, "stop_loss": 59000,
                                         "regime_vector": {"trend": 0.7, "vol": "high"}, "phase": 2})
        assert status == 200 and reply["type"] == "PREPARED", reply
        assert reply["order"]["quantity"] == 0.1 and reply["order"]["stop_loss"] == 59000
        # one-price entry zone: a limit order at it; 100 / |59500 - 59000| = 0.2
        status, reply, _ = hook(engine, {"type": "PREPARE", "signal_id": "sz-2", "symbol": "BTCUSDT",
                                         "direction": 1, "entry_zone": [59500], "stop_loss": 59000})
        assert (reply["order"]["order_type"], reply["order"]["price"], reply["order"]["quantity"]) == (
            "limit", 59500, 0.2)
        status, reply, _ = hook(engine, {"type": "PREPARE", "signal_id": "sz-3", "symbol": "BTCUSDT",
                                         "direction": -1})
        assert reply["code"] == "INVALID" and reply["reason"].startswith("stop_loss:"), reply
        status, reply, _ = hook(engine, {"type": "PREPARE", "signal_id": "sz-4", "symbol": "BTCUSDT",
                                         "direction": 1, "entry_zone": [59500, "x"], "stop_loss": 59000})
        assert reply["code"] == "INVALID" and reply["reason"].startswith("entry_zone"), reply
        assert hook(engine, {"type": "CONFIRM", "signal_id": "sz-1"})[1]["type"] == "ACCEPTED"
        url = engine.nats_url
        reports = wait_for(lambda: [e for e in read_stream(url, "titan.evt.execution.report.v1.BTCUSDT")
                                    if e["data"]["signal_id"] == "sz-1" and e["data"]["status"] == "FILLED"],
                           10, 0.2, "the fill reported")
        data = reports[0]["data"]
        assert data["extra"] == {"regime_vector": {"trend": 0.7, "vol": "high"}}
        assert data["arrival_price"] == 60000 and data["confirmed_at"] > 0
    finally:
        engine.stop()


def test_tokens_are_private_files_and_the_operator_endpoints_admit_only_the_operator_token(
        tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        for name in ("api", "operator"):
            path = engine.data_dir / f"{name}.token"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.getuid()
            assert len(path.read_text().strip()) >= 32
        assert token(engine, "api") != token(engine, "operator")
        halt = {"scope": "venue:paper", "mode": "HALTED", "reason": "drill", "operator": "alice"}
        url = base(engine)
        assert call(url + "/api/halt", method="POST", body=json.dumps(halt).encode())[:2] == (401, {
            "error": "UNAUTHORIZED", "reason": "Authorization: Bearer <operator token> missing or wrong"})
        assert operator(engine, "/api/halt", halt, bearer="wrong" * 10)[0] == 401
        assert operator(engine, "/api/halt", halt, bearer=token(engine, "api"))[:2][0] == 403
        assert operator(engine, "/api/halt", {**halt, "mode": "STOP"})[:2] == (422, {
            "error": "INVALID", "reason": "mode: must be one of HALTED, REDUCING"})
        assert operator(engine, "/api/halt", {**halt, "scope": "venue:nope"})[1]["reason"] == \
            "scope: no venue nope"
        assert call(url + "/nowhere")[:2] == (404, {"error": "NOT_FOUND", "reason": "Not Found"})
        status, reply, headers = call(url + "/webhook")
        assert status == 405 and reply["error"] == "METHOD_NOT_ALLOWED" and headers["Allow"] == "POST"
        with engine.client() as client:
            status, reply, _ = operator(engine, "/api/halt", halt)
            assert status == 200 and reply["states"] == {"venue:paper": "HALTED"}, reply
            assert client.prepare("op-1", "BTCUSDT", "buy", 0.01)["code"] == "HALTED"
            status, reply, _ = operator(engine, "/api/resume", {"scope": "venue:paper", "reason": "done"})
            assert status == 200 and reply["states"] == {}, reply
            assert client.prepare("op-2", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
        log = (engine.data_dir / "logs").glob("*")
        secrets_ = [token(engine, "api"), token(engine, "operator")]
        for path in log:
            if path.is_file():
                text = path.read_text(errors="replace")
                assert not any(s in text for s in secrets_), f"a token in {path}"
        assert not any(s in engine.output() for s in secrets_), "a token in the engine's own output"
        status_text = json.dumps(engine.status())
        assert not any(s in status_text for s in secrets_), "a token in titan status"
    finally:
        engine.stop()


def test_cancel_all_and_flatten_over_http_cancel_the_resting_and_close_the_positions(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            rest = client.prepare("hf-rest", "BTCUSDT", "buy", 0.01, "limit", price=50000.0)
            assert rest["type"] == "PREPARED"
            assert client.confirm("hf-rest")["type"] == "ACCEPTED"
            assert client.prepare("hf-buy", "ETHUSDT", "buy", 0.5)["type"] == "PREPARED"
            assert client.confirm("hf-buy")["type"] == "ACCEPTED"
        wait_for(lambda: engine.venue()["open_orders"] == 1, 5, 0.05, "one resting")
        status, reply, _ = operator(engine, "/api/orders/cancel-all", {"scope": "symbol:BTCUSDT",
                                                                       "reason": "drill"})
        assert status == 200 and reply["venues"]["paper"]["canceled"] == [client_order_id("hf-rest")], reply
        assert reply["unanswered"] == [] and engine.venue()["open_orders"] == 0
        wait_for(lambda: engine.actor("position:ETHUSDT")["detail"]["net"].get("paper") == 0.5, 5, 0.05,
                 "the buy filled")
        status, reply, _ = operator(engine, "/api/positions/flatten", {"scope": "global", "reason": "eod"})
        assert status == 200, reply
        closing = reply["venues"]["paper"]["closing"]
        assert list(closing) == ["ETHUSDT"] and closing["ETHUSDT"]["quantity"] == 0.5
        wait_for(lambda: engine.actor("position:ETHUSDT")["detail"]["net"].get("paper") == 0, 5, 0.05, "flat")
    finally:
        engine.stop()


def test_an_entry_zone_ladder_is_one_signal_of_several_limit_orders_whose_stop_follows_their_fills(
        tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        status, reply, _ = hook(engine, {"type": "PREPARE", "signal_id": "lad-1", "symbol": "BTCUSDT",
                                         "direction": 1, "quantity": 0.3, "entry_zone": [59000, 58000, 57000],
                                         "stop_loss": 56000})
        assert status == 200 and reply["type"] == "PREPARED", reply
        ladder = reply["order"]["ladder"]
        assert [(o["price"], o["quantity"]) for o in ladder] == [(59000, 0.1), (58000, 0.1), (57000, 0.1)]
        assert ladder[0]["client_order_id"] == client_order_id("lad-1") == reply["order"]["client_order_id"]
        assert len({o["client_order_id"] for o in ladder}) == 3
        assert hook(engine, {"type": "CONFIRM", "signal_id": "lad-1"})[1]["type"] == "ACCEPTED"
        wait_for(lambda: engine.venue()["open_orders"] == 3, 5, 0.05, "three rungs resting")
        engine.control({"cmd": "price", "symbol": "BTCUSDT", "bid": 57900, "ask": 57910, "last": 57905})
        wait_for(lambda: engine.actor("position:BTCUSDT")["detail"]["net"].get("paper") == 0.2, 5, 0.05,
                 "two rungs filled")
        # One stop for the signal, sized to both fills together.
        stops = wait_for(lambda: [o for o in engine.control({"cmd": "venue_orders"})["journal"].values()
                                  if o["leg"] == "sl" and o["status"] in ("ACCEPTED", "SUBMITTED")
                                  and o["quantity"] == 0.2], 5, 0.05, "the stop at 0.2")
        assert len(stops) == 1
        status, reply, _ = hook(engine, {"type": "CANCEL", "signal_id": "lad-1"})
        assert status == 200 and reply["type"] == "CANCELED", reply
        wait_for(lambda: engine.venue()["open_orders"] == 1, 5, 0.05, "the last rung canceled, the stop left")
    finally:
        engine.stop()
