"""The HTTP listener's open endpoints (shared/spec/http-api.md): `/health`
with the verdict `titan status` shows, `/metrics` in Prometheus' format."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.engine import FAST_SUPERVISION, RunningEngine, wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


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
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "[risk]\nmax_order_qty = 1\n").start()
    try:
        with engine.client() as client:
            for n in range(3):
                assert client.prepare(f"m-{n}", "BTCUSDT", "buy", 0.1)["type"] == "PREPARED"
                assert client.confirm(f"m-{n}")["type"] == "ACCEPTED"
            assert client.prepare("m-bad", "NOPE", "buy", 0.1)["type"] == "REJECTED"
            too_big = client.prepare("m-big", "BTCUSDT", "buy", 5)
            assert too_big["type"] == "REJECTED" and too_big["code"] == "RISK_REJECTED", too_big
        fills = ("titan_venue_fills_total", (("venue", "paper"),))
        wait_for(lambda: _samples(engine).get(fills) == 3, 10, 0.2, "three fills counted")
        samples = _samples(engine)
        gateway = engine.actor("gateway")["detail"]
        assert samples[("titan_fastpath_requests_total", ())] == gateway["requests"] == 8
        assert samples[("titan_fastpath_requests_by_type_total", (("type", "PREPARE"),))] == 5
        assert samples[("titan_fastpath_requests_by_type_total", (("type", "CONFIRM"),))] == 3
        accepted = samples[("titan_fastpath_replies_by_type_total", (("code", ""), ("type", "ACCEPTED")))]
        assert accepted == 3 == samples[("titan_confirm_to_accepted_seconds_count", ())], "one per ACCEPTED"
        assert samples[("titan_confirm_to_accepted_seconds_bucket", (("le", "+Inf"),))] == 3
        rejected = {k[1]: v for k, v in samples.items() if k[0] == "titan_fastpath_replies_by_type_total"
                    and ("type", "REJECTED") in k[1]}
        assert sorted(dict(k)["code"] for k in rejected) == ["INVALID", "RISK_REJECTED"]
        assert samples[("titan_risk_refusals_by_rule_total", (("rule", too_big["rule"]),))] == 1
        assert samples[("titan_fastpath_replies_total", ())] == gateway["replies"]
        assert samples[("titan_risk_approved_total", ())] == 3
        assert samples[("titan_position_quantity", (("symbol", "BTCUSDT"), ("venue", "paper")))] == 0.3
        assert samples[("titan_ready", ())] == 1
        assert samples[("titan_actor_up", (("role", "gateway"),))] == 1
        assert samples[("titan_trading_state", (("scope", "global"), ("state", "ACTIVE")))] == 1
        assert samples[("titan_nats_connected", ())] == 1
    finally:
        engine.stop()


_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def _metric_names(expression: str) -> set[str]:
    names = set(re.findall(r"\btitan_[a-z_]+", expression))
    return {next((n.removesuffix(s) for s in _SUFFIXES if n.endswith(s)), n) for n in names}


def _alert_rules() -> list[dict]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "titan-alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_dashboard_and_the_alert_rules_name_only_metrics_the_engine_exports(tmp_path: Path) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "titan.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(queries) >= 10 and all(_metric_names(q) for q in queries)
    rules = _alert_rules()
    assert {r["alert"] for r in rules} >= {"TitanNotReady", "TitanRestartsRising", "TitanOutboxBacklog",
                                          "TitanVenueDegraded", "TitanDailyLossNearLimit"}
    for rule in rules:  # the schema of a Prometheus alerting rule
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
        assert isinstance(rule["expr"], str) and rule["labels"]["severity"] in ("warning", "critical")
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule
    promtool = shutil.which("promtool")
    if promtool:
        rules_file = str(DEPLOY / "prometheus" / "titan-alerts.yml")
        checked = subprocess.run([promtool, "check", "rules", rules_file], capture_output=True, text=True,
                                 timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        wait_for(lambda: _samples(engine).get(("titan_ready", ())) == 1, 10, 0.1, "a whole status round")
        _status, body, _kind = _get(_url(engine) + "/metrics")
        exported = {family.name for family in text_string_to_metric_families(body.decode())}
    finally:
        engine.stop()
    named = set().union(*(_metric_names(q) for q in queries), *(_metric_names(r["expr"]) for r in rules))
    assert named <= exported, named - exported


def test_the_embedded_nats_server_has_its_monitoring_endpoint_on_loopback(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        monitor = engine.status()["nats_monitor_url"]
        assert monitor.startswith("http://127.0.0.1:")
        status, body, _kind = _get(monitor + "/jsz")
        assert status == 200 and json.loads(body)["config"]["store_dir"].startswith(str(engine.data_dir))
    finally:
        engine.stop()


def test_metrics_show_each_venue_the_workers_and_jetstream(tmp_path: Path) -> None:
    from tests.integration.test_venues import Venue

    venue = Venue(tmp_path, "bybit-linear").start()
    engine = venue.engine
    try:
        with engine.client() as client:
            assert client.prepare("v-1", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
            assert client.confirm("v-1")["type"] == "ACCEPTED"
        ex = (("venue", "ex"),)
        submitted = ("titan_venue_submitted_total", ex)
        samples = wait_for(lambda: (s := _samples(engine)).get(submitted) == 1 and s, 10, 0.2,
                           "a status round after the order")
        assert samples[("titan_jetstream_published_total", ())] >= 3
        assert samples[("titan_venue_round_trip_seconds_count", ex)] >= 3, "markets, the create, polls"
        every = samples[("titan_venue_round_trip_seconds_bucket", (("le", "+Inf"), ("venue", "ex")))]
        assert every == samples[("titan_venue_round_trip_seconds_count", ex)]
        assert ("titan_venue_rate_limit_headroom", ex) in samples
        assert samples[("titan_venue_private_stream", (("state", "off"), ("venue", "ex")))] == 1
        workers = {dict(k[1])["worker"] for k in samples if k[0] == "titan_worker_resident_memory_bytes"}
        running = {a["role"]: a["worker"] for a in engine.status()["actors"]}
        assert workers == set(running.values()), "every worker of the placement"
        assert all(v > 1_000_000 for k, v in samples.items() if k[0] == "titan_worker_resident_memory_bytes")
        assert samples[("titan_worker_cpu_seconds_total", (("worker", running["gateway"]),))] > 0
    finally:
        venue.stop()
