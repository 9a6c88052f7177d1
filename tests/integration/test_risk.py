"""The risk guard in a running engine: each rule through the real socket,
reservations, halts from the CLI and NATS that survive restarts, automatic
states, and fail-closed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import FAST_SUPERVISION, RunningEngine, titan_cmd, wait_for
from tests.support.nats import command, read_stream, signed
from titan_actors.wire import subjects

POLICY = FAST_SUPERVISION + """
[venues.paper]
exchange = "paper"
symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
reference_prices = { BTCUSDT = 60000.0, ETHUSDT = 3000.0, SOLUSDT = 150.0 }

[risk]
max_order_qty = 10
max_order_notional = 300000
max_open_orders = 3
price_band_bps = 500
orders_per_second_per_strategy = 5
allowed_venues = ["paper"]
allowed_symbols = ["BTCUSDT", "ETHUSDT"]

[risk.symbols.ETHUSDT]
max_order_qty = 2
"""


#: Not final: a part restarting or not ready (BUSY), or no answer in time (INTERNAL).
_NOT_FINAL = ("INTERNAL", "BUSY")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = RunningEngine(tmp_path_factory.mktemp("risk"), POLICY).start()
    try:
        yield running
    finally:
        running.stop()
        assert running.leftovers() == []


def _refused_by(reply: dict) -> str:
    assert (reply["type"], reply["code"]) == ("REJECTED", "RISK_REJECTED"), reply
    return reply["rule"]


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"symbol": "BTCUSDT", "quantity": 11}, "max_order_qty"),
        ({"symbol": "ETHUSDT", "quantity": 3}, "max_order_qty"),  # the per-symbol limit
        ({"symbol": "BTCUSDT", "quantity": 6}, "max_order_notional"),  # 360,000 at the reference
        ({"symbol": "BTCUSDT", "quantity": 1, "order_type": "limit", "price": 70000.0}, "price_band"),
        ({"symbol": "SOLUSDT", "quantity": 1}, "allowed_symbol"),
    ],
)
def test_each_rule_refuses_through_the_socket_naming_itself(guarded: RunningEngine, fields: dict,
                                                            rule: str) -> None:
    request = {"side": "buy", "order_type": "market", **fields}
    with guarded.client() as client:
        reply = client.prepare(f"r-{rule}-{time.monotonic_ns()}", request.pop("symbol"), request.pop("side"),
                               request.pop("quantity"), request.pop("order_type"), **request)
    assert _refused_by(reply) == rule
    assert reply["reason"]
    # ... and what is below the limit passes.
    with guarded.client() as client:
        ok = client.prepare(f"ok-{rule}-{time.monotonic_ns()}", "BTCUSDT", "buy", 1)
        assert ok["type"] == "PREPARED"
        assert client.abort(ok["signal_id"])["type"] == "ABORTED"  # prepared orders count as open


def test_a_refusal_is_an_order_denied_event(guarded: RunningEngine) -> None:
    signal_id = f"denied-{time.monotonic_ns()}"
    with guarded.client() as client:
        client.prepare(signal_id, "BTCUSDT", "buy", 11)
    def denied() -> list[dict]:
        reports = read_stream(guarded.nats_url, "titan.evt.execution.report.v1.>")
        return [e for e in reports if e["data"].get("signal_id") == signal_id]

    events = wait_for(denied, 10, 0.2, "the OrderDenied event")
    assert events[0]["type"] == "OrderDenied" and events[0]["data"]["rule"] == "max_order_qty"


def test_open_orders_count_prepared_and_resting_orders(guarded: RunningEngine) -> None:
    with guarded.client() as client:
        client.request({"type": "ABORT", "signal_id": "none"})  # nothing: keeps the count clean
        for i in range(3):
            assert client.prepare(f"oo-{i}", "ETHUSDT", "buy", 1, "limit", price=2900.0)["type"] == "PREPARED"
        assert _refused_by(client.prepare("oo-3", "ETHUSDT", "buy", 1, "limit", price=2900.0)) \
            == "max_open_orders"
        for i in range(3):
            assert client.abort(f"oo-{i}")["type"] == "ABORTED"
        wait_for(lambda: client.prepare(f"oo-after-{time.monotonic_ns()}", "ETHUSDT", "buy", 1, "limit",
                                        price=2900.0)["type"] == "PREPARED", 5, 0.1, "aborts released")


def test_the_strategy_throttle_refuses_a_burst(guarded: RunningEngine) -> None:
    with guarded.client() as client:
        replies = []
        for i in range(8):
            replies.append(client.prepare(f"th-{i}-{time.monotonic_ns()}", "BTCUSDT", "buy", 0.01,
                                          strategy_id="burst"))
            if replies[-1]["type"] == "PREPARED":
                client.abort(replies[-1]["signal_id"])  # keep max_open_orders out of it
    refused = [r for r in replies if r["type"] == "REJECTED"]
    assert refused and all(r["rule"] == "rate_per_strategy" for r in refused)
    assert sum(r["type"] == "PREPARED" for r in replies) == 5


def test_two_concurrent_prepares_that_together_pass_a_limit_one_each_alone_would_not(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "[risk]\nmax_position_notional = 600000\n").start()
    try:
        with engine.client() as client:
            first = client.send({"type": "PREPARE", "signal_id": "c-1", "symbol": "BTCUSDT", "side": "buy",
                                 "quantity": 6, "order_type": "market"})
            second = client.send({"type": "PREPARE", "signal_id": "c-2", "symbol": "BTCUSDT", "side": "buy",
                                  "quantity": 6, "order_type": "market"})
            replies = [client.wait(first), client.wait(second)]
        assert sorted(r["type"] for r in replies) == ["PREPARED", "REJECTED"]
        assert next(r for r in replies if r["type"] == "REJECTED")["rule"] == "max_position_notional"
    finally:
        engine.stop()


def test_a_filled_position_counts_and_survives_a_restart_of_the_risk_guard(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "[risk]\nmax_position_notional = 600000\n").start()
    try:
        with engine.client() as client:
            assert client.prepare("f-1", "BTCUSDT", "buy", 8)["type"] == "PREPARED"
            assert client.confirm("f-1")["type"] == "ACCEPTED"
            wait_for(lambda: engine.actor("risk")["detail"]["reserved"] == 0, 5, 0.05, "the fill counted")
            assert _refused_by(client.prepare("f-2", "BTCUSDT", "buy", 3)) == "max_position_notional"
            assert client.prepare("f-3", "BTCUSDT", "sell", 3)["type"] == "PREPARED", "reducing passes"
            client.abort("f-3")
        old = engine.pids()["risk"]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: engine.pids().get("risk") not in (None, old), 5, 0.02, "risk restarted")
        engine.wait_serving()  # its whole worker may have gone with it
        with engine.client() as client:
            def answer() -> dict | None:
                reply = client.prepare(f"f-after-{time.monotonic_ns()}", "BTCUSDT", "buy", 3)
                return None if reply.get("code") in _NOT_FINAL else reply
            reply = wait_for(answer, 10, 0.1, "the rebuilt risk guard answers")
        assert _refused_by(reply) == "max_position_notional", "the rebuilt view still counts the position"
    finally:
        engine.stop()


# --- trading states ----------------------------------------------------------------------


def _titan(engine: RunningEngine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(titan_cmd(*args, "--config", str(engine.config)), env=engine.env,
                          capture_output=True, text=True, timeout=60)


def test_a_halt_from_the_cli_or_nats_survives_a_killed_risk_guard_and_an_engine_restart(
    tmp_path: Path,
) -> None:
    engine = RunningEngine(tmp_path).start()
    try:
        halted = _titan(engine, "halt", "--reason", "drill", "--operator", "ops")
        assert halted.returncode == 0, halted.stderr
        assert json.loads(halted.stdout)["trading_state"] == "HALTED"
        with engine.client() as client:
            assert client.prepare("h-1", "BTCUSDT", "buy", 0.01)["code"] == "HALTED"
            assert client.ping()["trading_state"] == "HALTED"
        old = engine.pids()["risk"]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: engine.pids().get("risk") not in (None, old), 5, 0.02, "risk restarted")
        engine.wait_serving()  # its whole worker may have gone with it
        with engine.client() as client:
            reply = wait_for(lambda: (r := client.prepare(f"h-2-{time.monotonic_ns()}", "BTCUSDT", "buy",
                                                          0.01)).get("code") not in _NOT_FINAL and r,
                             10, 0.1, "an answer")
            assert reply["code"] == "HALTED"
    finally:
        engine.stop()
    engine = RunningEngine(tmp_path).start()  # same data dir: a new engine
    try:
        with engine.client() as client:
            assert client.prepare("h-3", "BTCUSDT", "buy", 0.01)["code"] == "HALTED"
        payload, headers = signed(subjects.CMD_RESUME, {"reason": "over", "operator": "ops"},
                                  engine.operator_secret)
        resumed = command(engine.nats_url, subjects.CMD_RESUME, payload, headers)
        assert resumed["trading_state"] == "ACTIVE"
        with engine.client() as client:
            assert client.prepare("h-4", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
        payload, headers = signed(subjects.CMD_HALT, {"mode": "HALTED", "reason": "nats", "operator": "ops",
                                                      "scope": "venue:paper"}, engine.operator_secret)
        assert command(engine.nats_url, subjects.CMD_HALT, payload, headers)["scope"] == "venue:paper"
        with engine.client() as client:
            refused = client.prepare("h-5", "BTCUSDT", "buy", 0.01)
            assert refused["code"] == "HALTED" and "venue:paper" in refused["reason"]
            # Cancels always pass a halt: nothing live here, so it is UNKNOWN_SIGNAL, not HALTED.
            assert client.cancel("h-4")["code"] == "UNKNOWN_SIGNAL"
    finally:
        engine.stop()


def test_reducing_admits_only_orders_that_reduce_the_position(engine: RunningEngine) -> None:
    with engine.client() as client:
        client.prepare("rd-1", "BTCUSDT", "buy", 2)
        client.confirm("rd-1")
        wait_for(lambda: engine.actor("risk")["detail"]["reserved"] == 0, 5, 0.05, "the fill counted")
        assert _titan(engine, "halt", "--reason", "wind down", "--mode", "REDUCING").returncode == 0
        assert client.prepare("rd-2", "BTCUSDT", "buy", 1)["code"] == "HALTED"
        assert client.prepare("rd-3", "BTCUSDT", "sell", 3)["code"] == "HALTED", "would flip: not reducing"
        assert client.prepare("rd-4", "BTCUSDT", "sell", 1.5)["type"] == "PREPARED"


def test_a_daily_loss_beyond_the_limit_moves_trading_to_reducing(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "[risk]\ndaily_loss_limit = 5000\n").start()
    try:
        with engine.client() as client:
            assert client.prepare("dl-1", "BTCUSDT", "buy", 1)["type"] == "PREPARED"
            assert client.confirm("dl-1")["type"] == "ACCEPTED"
            engine.control({"cmd": "price", "symbol": "BTCUSDT", "bid": 50000, "ask": 50010, "last": 50005})
            assert client.prepare("dl-2", "BTCUSDT", "sell", 1)["type"] == "PREPARED"
            assert client.confirm("dl-2")["type"] == "ACCEPTED"
        state = wait_for(lambda: (s := engine.actor("risk")["detail"]["states"]).get("global") and s, 5, 0.05,
                         "the automatic state")
        assert state == {"global": "REDUCING"}
        events = wait_for(lambda: [e for e in read_stream(engine.nats_url, subjects.RISK_STATE)], 10,
                          0.2, "the state event")
        assert events[-1]["data"]["operator"] == "risk-guard" and "daily" in events[-1]["data"]["reason"]
    finally:
        engine.stop()


def test_consecutive_venue_errors_open_the_circuit_breaker_for_that_venue(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "[risk]\nvenue_error_limit = 2\n").start()
    try:
        engine.control({"cmd": "venue_outage", "down": True})
        with engine.client() as client:
            for i in range(2):
                client.prepare(f"cb-{i}", "BTCUSDT", "buy", 0.01)
                assert client.confirm(f"cb-{i}")["code"] == "VENUE_UNAVAILABLE"
            wait_for(lambda: engine.actor("risk")["detail"]["states"].get("venue:paper") == "HALTED", 5, 0.05,
                     "the breaker")
            engine.control({"cmd": "venue_outage", "down": False})
            refused = client.prepare("cb-3", "BTCUSDT", "buy", 0.01)
            assert refused["code"] == "HALTED" and "venue:paper" in refused["reason"]
    finally:
        engine.stop()


def test_titan_risk_check_prints_every_rules_verdict(guarded: RunningEngine) -> None:
    result = _titan(guarded, "risk", "check", "--symbol", "BTCUSDT", "--side", "buy", "--quantity", "11",
                    "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    verdicts = {v["rule"]: v for v in report["verdicts"]}
    expected = {"trading_state", "max_order_qty", "max_order_notional", "price_band", "rate_per_strategy"}
    assert expected <= set(verdicts)
    assert verdicts["max_order_qty"]["ok"] is False and verdicts["trading_state"]["ok"] is True
    text = _titan(guarded, "risk", "check", "--symbol", "BTCUSDT", "--side", "buy", "--quantity", "1")
    assert text.returncode == 0 and "PASS  max_order_qty" in text.stdout


def test_titan_risk_reload_validates_before_it_replaces_the_policy(guarded: RunningEngine) -> None:
    original = guarded.config.read_text()
    try:
        guarded.config.write_text(original.replace("max_order_qty = 10", "max_order_qty = -3"))
        bad = _titan(guarded, "risk", "reload")
        assert bad.returncode != 0 and "risk.max_order_qty" in bad.stderr
        with guarded.client() as client:  # the old policy stays
            assert _refused_by(client.prepare(f"rl-old-{time.monotonic_ns()}", "BTCUSDT", "buy", 11)) \
                == "max_order_qty"
        guarded.config.write_text(original.replace("max_order_qty = 10", "max_order_qty = 20"))
        good = _titan(guarded, "risk", "reload")
        assert good.returncode == 0, good.stderr
        assert json.loads(good.stdout)["limits"]["max_order_qty"] == 20
        with guarded.client() as client:
            assert _refused_by(client.prepare(f"rl-{time.monotonic_ns()}", "BTCUSDT", "buy", 11)) \
                == "max_order_notional", "11 is no longer above max_order_qty"
    finally:
        guarded.config.write_text(original)
        _titan(guarded, "risk", "reload")


def test_a_signal_prepared_before_a_halt_cannot_be_confirmed_during_it(engine: RunningEngine) -> None:
    with engine.client() as client:
        assert client.prepare("pb-1", "BTCUSDT", "buy", 0.1)["type"] == "PREPARED"
        assert _titan(engine, "halt", "--reason", "now", "--scope", "symbol:BTCUSDT").returncode == 0
        refused = wait_for(lambda: (r := client.confirm("pb-1"))["type"] == "REJECTED" and r, 2, 0.05,
                           "the confirm refused")
        assert refused["code"] == "HALTED"
    assert engine.venue()["orders_placed"] == 0


TWO_VENUES = """
[venues.paper]
exchange = "paper"
[venues.paper2]
exchange = "paper"
[routing]
default_venue = "paper"
"""


@pytest.mark.parametrize(
    ("policy", "orders", "rule"),
    [
        (TWO_VENUES + "[risk]\nallowed_venues = ['paper']\n",
         [("BTCUSDT", 0.1, {"exchange": "paper2"})], "allowed_venue"),
        ("[risk]\nmax_gross_notional = 100000\n", [("BTCUSDT", 2, {})], "max_gross_notional"),
        ("[risk]\nmax_leverage = 1\nequity = 100000\n", [("BTCUSDT", 2, {})], "max_leverage"),
        ("[risk]\nmax_open_orders_total = 1\n", [("BTCUSDT", 0.1, {}), ("ETHUSDT", 0.1, {})],
         "max_open_orders_total"),
        ("[risk]\norders_per_second_per_venue = 2\n",
         [("BTCUSDT", 0.1, {}), ("BTCUSDT", 0.1, {}), ("BTCUSDT", 0.1, {})], "rate_per_venue"),
        ("[risk]\nno_market_price = 'refuse'\n", [("BTCUSDT", 0.1, {})], "market_price"),
    ],
)
def test_the_other_rules_refuse_through_the_socket_too(tmp_path: Path, policy: str, orders: list,
                                                       rule: str) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + policy).start()
    try:
        with engine.client() as client:
            replies = [client.prepare(f"o-{i}", symbol, "buy", qty, **extra)
                       for i, (symbol, qty, extra) in enumerate(orders)]
        assert all(r["type"] == "PREPARED" for r in replies[:-1])
        assert _refused_by(replies[-1]) == rule
    finally:
        engine.stop()


def test_a_restarted_gateway_confirms_nothing_until_it_knows_the_trading_states(
    engine: RunningEngine,
) -> None:
    with engine.client() as client:
        assert client.prepare("gw-1", "BTCUSDT", "buy", 0.1)["type"] == "PREPARED"
    assert _titan(engine, "halt", "--reason", "r", "--scope", "symbol:BTCUSDT").returncode == 0
    gateway = engine.cells()["gateway"]
    engine.pause("risk")  # the new gateway cannot learn the states
    try:
        engine.kill("gateway")
        wait_for(lambda: engine.cells().get("gateway") not in (None, gateway), 10, 0.05, "a new gateway")

        def confirm() -> dict | None:
            try:
                with engine.client(timeout=5) as client:
                    return client.confirm("gw-1")
            except Exception:
                return None

        # The new gateway does not even serve the socket before it knows them.
        time.sleep(0.5)
        assert engine.actor("gateway")["detail"]["serving"] is False
        assert confirm() is None, "nothing can be confirmed before the states are known"
    finally:
        engine.resume("risk")
    reply = wait_for(confirm, 10, 0.1, "the states known")
    assert reply["code"] == "HALTED"
    assert engine.venue()["orders_placed"] == 0


def test_a_confirmed_order_stays_reserved_until_a_snapshot_counts_it(engine: RunningEngine) -> None:
    engine.pause("position:BTCUSDT")  # no snapshot can count the new order
    try:
        with engine.client() as client:
            assert client.prepare("rv-1", "BTCUSDT", "buy", 0.1, ttl_ms=100)["type"] == "PREPARED"
            assert client.confirm("rv-1")["type"] == "ACCEPTED"
            assert client.prepare("rv-2", "BTCUSDT", "buy", 0.1, ttl_ms=100)["type"] == "PREPARED"
        time.sleep(6.5)  # past ttl + the grace: the adapter was asked
        detail = engine.actor("risk")["detail"]
        assert detail["reserved"] == 1, "the confirmed one stays, the expired one is released"
    finally:
        engine.resume("position:BTCUSDT")
    wait_for(lambda: engine.actor("risk")["detail"]["reserved"] == 0, 10, 0.1, "counted by a snapshot")


def test_an_order_journaled_before_a_halt_but_never_sent_is_not_sent_after_the_restart(
    engine: RunningEngine,
) -> None:
    with engine.client() as client:
        assert client.prepare("jh-1", "BTCUSDT", "buy", 0.1)["type"] == "PREPARED"
    # The adapter alone dies (its neighbours, the gateway among them, go on).
    engine.control({"cmd": "fault", "role": "venue:paper", "at": "adapter.after_journal", "kill": "actor"})
    engine.pause("venues")  # the killed adapter stays down until we let it
    try:
        with engine.client(timeout=4) as client:
            reply = client.confirm("jh-1")  # journaled, then the adapter dies before sending
        assert reply.get("code") == "INTERNAL"
        assert _titan(engine, "halt", "--reason", "meanwhile", "--scope", "symbol:BTCUSDT").returncode == 0
    finally:
        engine.resume("venues")
    engine.wait_whole(set(engine.pids()) | {"venue:paper"})
    with engine.client() as client:
        again = wait_for(lambda: (r := client.confirm("jh-1")).get("code") not in _NOT_FINAL and r, 10, 0.1,
                         "the resolved outcome")
    assert again["code"] == "HALTED", again
    assert engine.venue()["orders_placed"] == 0, "nothing reached the venue during the halt"
