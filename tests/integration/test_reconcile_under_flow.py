"""Reconciliation at a consistent cut (issue 20, item 1): while orders keep
flowing on every exchange fake, a trade made outside the engine is acted on
within three reconcile intervals, and fills merely in flight are never drift.

One engine trades on the Bybit, Binance and MEXC fakes at once (each its own
adapter and worker), market orders of 0.001 BTC, buys and sells in turn."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tests.support.engine import FAST_SUPERVISION, REAL_VENUE_LIMITS, RunningEngine, wait_for
from tests.support.fake_binance import FakeBinance
from tests.support.fake_bybit import FakeBybit
from tests.support.fake_exchange import FakeExchange
from tests.support.fake_mexc import FakeMexc
from tests.support.nats import read_stream
from titan_actors.wire import subjects

FAKES: dict[str, Callable[[], FakeExchange]] = {"bybit": FakeBybit, "binance": FakeBinance, "mexc": FakeMexc}
INTERVAL_S = 1.0
#: Three intervals, and the time an answer takes on a loaded machine.
ACTED_ON_WITHIN_S = 3 * INTERVAL_S + 0.5


class Venues:
    """The three fakes and an engine trading on all of them."""

    def __init__(self, tmp: Path, policy: str) -> None:
        self.fakes = {name: make().start() for name, make in FAKES.items()}
        config = FAST_SUPERVISION + REAL_VENUE_LIMITS + f"""
[positions]
reconcile_interval_s = {INTERVAL_S}
[routing]
default_venue = "bybit"
"""
        for name, fake in self.fakes.items():
            config += f"""
[venues.{name}]
exchange = "{name}"
market = "linear"
api_key = "test-key"
api_secret = "test-secret"
base_url = "{fake.url}"
ws_base_url = "{fake.ws_url}"
poll_interval_ms = 200
request_timeout_ms = 2000
retry_backoff_ms = 50
published_limit_per_s = 60
rate_limit_per_s = 50
reconcile_policy = "{policy}"
"""
        self.engine = RunningEngine(tmp, config)

    def start(self) -> Venues:
        self.engine.start()

        def reconciled() -> bool:
            results = self.position()["reconciled"]
            return all((results.get(v) or {}).get("result") == "ok" for v in self.fakes)

        wait_for(reconciled, 20, 0.05, "every venue reconciled")
        return self

    def stop(self) -> None:
        try:
            self.engine.stop()
        finally:
            for fake in self.fakes.values():
                fake.stop()

    def position(self) -> dict[str, Any]:
        return self.engine.actor("position:BTCUSDT")["detail"]

    def drift(self, kind: str = "PositionDrift") -> list[dict[str, Any]]:
        return [e["data"] for e in read_stream(self.engine.nats_url, subjects.drift("BTCUSDT"))
                if e["type"] == kind]

    def settled(self) -> bool:
        """The engine holds what every fake holds (once nothing is in flight)."""
        net = self.position()["net"]
        return all(round(net.get(v, 0), 9) == round(f.position("BTCUSDT"), 9) for v, f in self.fakes.items())


class Flow:
    """Market orders on one venue every `period_s`, buy and sell in turn,
    from its own FastPath connection, until stopped."""

    def __init__(self, engine: RunningEngine, venue: str, period_s: float) -> None:
        self.engine, self.venue, self.period_s = engine, venue, period_s
        self.replies: Counter[str] = Counter()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"flow-{venue}", daemon=True)

    def __enter__(self) -> Flow:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
        assert self.error is None, f"{self.venue}: {self.error!r}"

    def _run(self) -> None:
        try:
            with self.engine.client() as client:
                n, due = 0, time.monotonic()
                while not self._stop.is_set():
                    n += 1
                    signal_id = f"{self.venue}-{n}"
                    reply = client.prepare(signal_id, "BTCUSDT", "buy" if n % 2 else "sell", 0.001,
                                           exchange=self.venue)
                    if reply["type"] == "PREPARED":
                        reply = client.confirm(signal_id)
                    outcome = reply["type"] if reply["type"] == "ACCEPTED" else reply.get("code", "?")
                    self.replies[outcome] += 1
                    due += self.period_s
                    self._stop.wait(max(0.0, due - time.monotonic()))
        except BaseException as exc:  # the test reports it
            self.error = exc

    def accepted(self) -> int:
        return self.replies["ACCEPTED"]


def _wait_for_orders(flows: list[Flow]) -> None:
    before = {f.venue: f.accepted() for f in flows}
    wait_for(lambda: all(f.accepted() >= before[f.venue] + 3 for f in flows), 10, 0.05,
             "orders flowing on every exchange")


def _drift_on(venues: Venues, venue: str) -> list[dict[str, Any]]:
    return [d for d in venues.drift() if d["venue"] == venue]


def _outside_sale(fake: FakeExchange) -> None:
    """Someone sells 0.005 BTC on the exchange's site."""
    fake.bad_trade(None, 0.005, 60000.0, side="sell")


def test_fills_in_flight_are_never_drift_and_a_trade_outside_the_engine_is_adopted_while_orders_flow(
        tmp_path: Path) -> None:
    venues = Venues(tmp_path, "adopt").start()
    try:
        flows = [Flow(venues.engine, v, 0.1) for v in venues.fakes]  # 10 orders/s on each exchange
        for flow in flows:
            flow.__enter__()
        try:
            time.sleep(60)
            kinds = ("PositionDrift", "OrderAdopted", "OrderClosedAtVenue")
            clean = {kind: venues.drift(kind) for kind in kinds}
            assert clean == {"PositionDrift": [], "OrderAdopted": [], "OrderClosedAtVenue": []}, \
                "60 s of fills in flight, no drift"
            for flow in flows:
                assert flow.accepted() >= 300, (flow.venue, flow.replies)
            # Now a trade outside the engine on every exchange, orders still flowing.
            for fake in venues.fakes.values():
                _outside_sale(fake)
            wait_for(lambda: len(venues.drift()) == 3, ACTED_ON_WITHIN_S, 0.05, "each drift acted on")
        finally:
            for flow in flows:
                flow.__exit__()
        wait_for(venues.settled, 10, 0.1, "the engine holding what each exchange holds")
        drift = venues.drift()
        assert sorted(d["venue"] for d in drift) == sorted(venues.fakes), "each drift reported once"
        assert {d["diff"] for d in drift} == {-0.005}, "the drift is the outside trade, to the unit"
    finally:
        venues.stop()


def test_with_the_halt_policy_a_trade_outside_the_engine_halts_the_symbol_while_orders_flow(
        tmp_path: Path) -> None:
    venues = Venues(tmp_path, "halt").start()
    engine = venues.engine

    def state() -> str | None:
        return engine.actor("risk")["detail"]["states"].get("symbol:BTCUSDT")

    try:
        flows = [Flow(engine, v, 0.3) for v in venues.fakes]
        for flow in flows:
            flow.__enter__()
        try:
            for venue, fake in venues.fakes.items():
                _wait_for_orders(flows)
                _outside_sale(fake)
                (drift,) = wait_for(partial(_drift_on, venues, venue), ACTED_ON_WITHIN_S, 0.05,
                                    f"the drift on {venue} acted on")
                assert (drift["diff"], drift["policy"]) == (-0.005, "halt")
                wait_for(lambda: state() == "HALTED", 5, 0.05, "the symbol halted")
                engine.control({"cmd": "trading_state", "mode": "ACTIVE", "scope": "symbol:BTCUSDT",
                                "reason": "checked", "operator": "test"})
        finally:
            for flow in flows:
                flow.__exit__()
        assert [d["venue"] for d in venues.drift()] == list(venues.fakes), "one drift event per trade outside"
        for flow in flows:
            assert flow.replies["HALTED"] > 0, (flow.venue, flow.replies)
    finally:
        venues.stop()
