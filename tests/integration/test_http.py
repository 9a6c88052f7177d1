"""The HTTP listener's open endpoints (shared/spec/http-api.md): `/health`
with the verdict `titan status` shows, `/metrics` in Prometheus' format."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.engine import FAST_SUPERVISION, RunningEngine, wait_for


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read(), reply.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def _url(engine: RunningEngine) -> str:
    return wait_for(lambda: engine.status().get("http_url"), 10, 0.1, "the HTTP listener bound")


def _health(engine: RunningEngine) -> tuple[int, dict]:
    status, body, _kind = _get(_url(engine) + "/health")
    return status, json.loads(body)


def _samples(engine: RunningEngine) -> dict[tuple[str, tuple], float]:
    status, body, kind = _get(_url(engine) + "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def test_health_is_503_while_a_venue_is_down_or_an_actor_restarting_and_200_again_after(
        tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        url = _url(engine)
        assert url.startswith("http://127.0.0.1:")
        _status, body = wait_for(lambda: (h := _health(engine))[0] == 200 and h, 10, 0.1, "healthy")
        assert body["status"] == "ok" and body["ts"].endswith("Z") and body["components"]["nats"]["ok"]
        engine.control({"cmd": "venue_outage", "down": True})
        _status, body = wait_for(lambda: (h := _health(engine))[0] == 503 and h, 10, 0.1, "degraded")
        assert body["status"] == "degraded"
        assert body["components"]["venue:paper"] == {"ok": False, "reason": "the venue is down"}
        engine.control({"cmd": "venue_outage", "down": False})
        wait_for(lambda: _health(engine)[0] == 200, 10, 0.1, "healthy again")
        engine.pause("risk")  # a restarting actor answers nothing
        try:
            _status, body = wait_for(lambda: (h := _health(engine))[0] == 503 and h, 10, 0.1, "degraded")
            assert "risk" in body["components"]["actors"]["reason"]
        finally:
            engine.resume("risk")
        wait_for(lambda: _health(engine)[0] == 200, 10, 0.1, "healthy after the restart")
    finally:
        engine.stop()


def test_metrics_count_what_was_sent_and_what_filled(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            for n in range(3):
                assert client.prepare(f"m-{n}", "BTCUSDT", "buy", 0.1)["type"] == "PREPARED"
                assert client.confirm(f"m-{n}")["type"] == "ACCEPTED"
            assert client.prepare("m-bad", "NOPE", "buy", 0.1)["type"] == "REJECTED"
        fills = ("titan_venue_fills_total", (("venue", "paper"),))
        wait_for(lambda: _samples(engine).get(fills) == 3, 10, 0.2, "three fills counted")
        samples = _samples(engine)
        gateway = engine.actor("gateway")["detail"]
        assert samples[("titan_fastpath_requests_total", ())] == gateway["requests"] == 7
        assert samples[("titan_fastpath_replies_total", ())] == gateway["replies"]
        assert samples[("titan_risk_approved_total", ())] == 3
        assert samples[("titan_position_quantity", (("symbol", "BTCUSDT"), ("venue", "paper")))] == 0.3
        assert samples[("titan_ready", ())] == 1
        assert samples[("titan_actor_up", (("role", "gateway"),))] == 1
        assert samples[("titan_trading_state", (("scope", "global"), ("state", "ACTIVE")))] == 1
        assert samples[("titan_nats_connected", ())] == 1
    finally:
        engine.stop()
