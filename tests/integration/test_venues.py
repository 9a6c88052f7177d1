"""Exchange venues through a running engine: FastPath → risk → the ccxt
adapter → real HTTP → a local fake of the exchange that verifies signatures.
ccxt itself is neither patched nor mocked."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engine import FAST_SUPERVISION, REAL_VENUE_LIMITS, RunningEngine, titan_cmd, wait_for
from tests.support.fake_binance import FakeBinance
from tests.support.fake_bybit import FakeBybit
from tests.support.fake_exchange import FakeExchange
from tests.support.fake_mexc import FakeMexc
from titan_actors.domain.ids import client_order_id

CASES: dict[str, tuple[Callable[[], FakeExchange], str, str]] = {
    "bybit-linear": (FakeBybit, "bybit", "linear"),
    "bybit-spot": (FakeBybit, "bybit", "spot"),
    "binance-linear": (FakeBinance, "binance", "linear"),
    "binance-spot": (FakeBinance, "binance", "spot"),
    "mexc-swap": (FakeMexc, "mexc", "linear"),
    "mexc-spot": (FakeMexc, "mexc", "spot"),
}


def _config(
    fake: FakeExchange, exchange: str, market: str, extra: str, poll_ms: int = 100, reconcile_s: float = 0.5
) -> str:
    return (
        FAST_SUPERVISION
        + REAL_VENUE_LIMITS
        + f"""
[positions]
reconcile_interval_s = {reconcile_s}
[routing]
default_venue = "ex"
[venues.ex]
exchange = "{exchange}"
market = "{market}"
api_key = "test-key"
api_secret = "test-secret"
base_url = "{fake.url}"
poll_interval_ms = {poll_ms}
request_timeout_ms = 800
retry_backoff_ms = 50
{extra}
"""
    )


class Venue:
    def __init__(
        self,
        tmp: Path,
        case: str,
        extra: str = "",
        *,
        poll_ms: int = 100,
        reconcile_s: float = 0.5,
        stream: bool = False,
    ) -> None:
        make, self.exchange, self.market = CASES[case]
        self.fake = make().start()
        if stream:
            extra += f'\nws_base_url = "{self.fake.ws_url}"'
        config = _config(self.fake, self.exchange, self.market, extra, poll_ms, reconcile_s)
        self.engine = RunningEngine(tmp, config)

    def start(self) -> Venue:
        self.engine.start()

        def reconciled() -> bool:
            result = self.engine.actor("position:BTCUSDT")["detail"]["reconciled"].get("ex", {})
            return result.get("result") == "ok"

        wait_for(reconciled, 10, 0.05, "the position reconciled with the exchange")
        return self

    def stop(self) -> None:
        try:
            self.engine.stop()
        finally:
            self.fake.stop()

    def detail(self) -> dict[str, Any]:
        return self.engine.venue("ex")

    def creates(self) -> int:
        return sum(
            1
            for c in self.fake.calls
            if c.method == "POST"
            and "cancel" not in c.path
            and c.path.endswith(("/order", "/order/create", "/order/submit"))
        )


@pytest.fixture
def bybit(tmp_path: Path) -> Iterator[Venue]:
    venue = Venue(tmp_path, "bybit-linear").start()
    try:
        yield venue
    finally:
        venue.stop()


def _executions(client: Any, until: Callable[[dict], bool], timeout: float = 10.0) -> list[dict]:
    seen: list[dict] = []
    while not seen or not until(seen[-1]):
        seen.append(client.next_execution(timeout))
    return seen


@pytest.mark.parametrize("case", list(CASES))
def test_orders_are_created_filled_and_canceled_at_the_exchange_with_every_call_signed(
    tmp_path: Path, case: str
) -> None:
    venue = Venue(tmp_path, case).start()
    try:
        with venue.engine.client() as client:
            prepared = client.prepare("v-1", "BTCUSDT", "buy", 0.01005)
            assert prepared["order"]["quantity"] == pytest.approx(0.01), "rounded down to the venue's step"
            assert client.confirm("v-1")["type"] == "ACCEPTED"
            filled = _executions(client, lambda e: e["status"] == "FILLED")[-1]
            coid = client_order_id("v-1")
            (trade,) = [t for t in venue.fake.trades if t.order.client_id == coid]
            assert filled["last_fill"]["trade_id"] == trade.trade_id, "the venue's own trade id"
            assert (filled["filled_qty"], filled["avg_price"]) == (pytest.approx(0.01), 60000.0)

            client.prepare("v-2", "BTCUSDT", "sell", 0.02, order_type="limit", price=70000.0)
            assert client.confirm("v-2")["type"] == "ACCEPTED"
            resting = client_order_id("v-2")
            wait_for(lambda: resting in venue.fake.orders, 5, 0.02, "the limit order at the venue")
            venue.fake.fill(resting, 0.005)
            part = _executions(client, lambda e: e["status"] == "PARTIALLY_FILLED")[-1]
            assert part["filled_qty"] == pytest.approx(0.005)
            assert client.cancel("v-2")["type"] == "CANCELED"
            canceled = _executions(client, lambda e: e["status"] == "CANCELED")[-1]
            assert canceled["filled_qty"] == pytest.approx(0.005)
        assert venue.fake.orders[resting].status == "canceled"
        # The position actor gets the fills as deliveries, a few ms after the client.
        wait_for(lambda: venue.engine.actor("position:BTCUSDT")["detail"]["net"].get("ex")
                 == pytest.approx(0.005), 5, 0.02, "the position counts every fill")
        private = [
            c
            for c in venue.fake.calls
            if c.path.startswith(
                (
                    "/v5/order",
                    "/v5/position",
                    "/v5/execution",
                    "/fapi/v1/order",
                    "/api/v3/order",
                    "/api/v1/private",
                )
            )
        ]
        assert private and all(c.signed for c in private)
        assert venue.fake.bad_signatures == 0
    finally:
        venue.stop()


#: How each venue's fake is asked for the page after a full one.
_NEXT_PAGE = {"bybit": "cursor=", "binance": "fromId=", "mexc-swap": "page_num=", "mexc-spot": "endTime="}


# Each way of paging once: Bybit's spot and linear trades share a cursor, Binance's share trade ids.
@pytest.mark.parametrize("case", ["bybit-linear", "binance-linear", "mexc-swap", "mexc-spot"])
def test_more_fills_between_two_polls_than_a_page_holds_all_arrive_with_their_trade_ids(
    tmp_path: Path, case: str
) -> None:
    venue = Venue(tmp_path, case, "trades_page_size = 20", poll_ms=1500).start()
    try:
        with venue.engine.client() as client:
            client.prepare("pg-1", "BTCUSDT", "buy", 0.07, order_type="limit", price=50000.0)
            assert client.confirm("pg-1")["type"] == "ACCEPTED"
            coid = client_order_id("pg-1")
            wait_for(lambda: coid in venue.fake.orders, 5, 0.02, "the limit order at the venue")
            for _ in range(70):  # 3½ pages, most within one millisecond (one sweep of a book)
                venue.fake.fill(coid, 0.001)
                if case == "mexc-spot":  # it pages by time only: a page needs two timestamps
                    time.sleep(0.002)
            executions = _executions(client, lambda e: e["status"] == "FILLED", timeout=15)
        delivered = {e["last_fill"]["trade_id"] for e in executions if e.get("last_fill")}
        assert delivered == {t.trade_id for t in venue.fake.trades if t.order.client_id == coid}
        assert len(delivered) == 70
        assert executions[-1]["filled_qty"] == pytest.approx(0.07)
        venue_key = case if case.startswith("mexc") else venue.exchange
        assert any(_NEXT_PAGE[venue_key] in c.query for c in venue.fake.calls), "a page after a full one"
        # The position actor gets the fills as deliveries, a few ms after the client.
        wait_for(lambda: venue.engine.actor("position:BTCUSDT")["detail"]["net"].get("ex")
                 == pytest.approx(0.07), 5, 0.02, "the position counts every fill")
    finally:
        venue.stop()


def test_an_order_below_the_venues_minimum_is_refused_at_prepare_with_the_field_named(bybit: Venue) -> None:
    with bybit.engine.client() as client:
        refused = client.prepare("m-1", "BTCUSDT", "buy", 0.0004)
    assert (refused["type"], refused["code"]) == ("REJECTED", "INVALID")
    assert refused["reason"].startswith("quantity:")


def test_a_sure_refusal_by_the_venue_is_venue_rejected_with_its_message(tmp_path: Path) -> None:
    venue = Venue(tmp_path, "bybit-linear").start()
    try:
        venue.fake.secret = "rotated"  # the venue no longer accepts our key: AuthenticationError
        with venue.engine.client() as client:
            client.prepare("r-1", "BTCUSDT", "buy", 0.01)
            refused = client.confirm("r-1")
        assert (refused["type"], refused["code"]) == ("REJECTED", "VENUE_REJECTED")
        assert "AuthenticationError" in refused["reason"]
        assert not venue.fake.orders
    finally:
        venue.stop()


@pytest.mark.parametrize(
    ("case", "fault"),
    [
        ("bybit-linear", "timeout"),
        ("bybit-linear", "lost"),
        ("binance-linear", "lost"),
        ("binance-spot", "timeout"),
        ("mexc-swap", "lost"),
        ("mexc-spot", "timeout"),
    ],
)
def test_an_order_placed_whose_answer_was_lost_is_found_by_client_order_id_and_its_fills_arrive(
    tmp_path: Path, case: str, fault: str
) -> None:
    venue = Venue(tmp_path, case).start()
    try:
        venue.fake.fail_next(fault)
        with venue.engine.client() as client:
            client.prepare("t-1", "BTCUSDT", "buy", 0.01)
            assert client.confirm("t-1")["type"] == "ACCEPTED"
            filled = _executions(client, lambda e: e["status"] == "FILLED")[-1]
        assert filled["filled_qty"] == pytest.approx(0.01)
        assert list(venue.fake.orders) == [client_order_id("t-1")], "exactly one order"
        assert venue.creates() == 1, "looked up, never sent again"
    finally:
        venue.stop()


@pytest.mark.parametrize("fault", ["5xx", "ratelimit"])
def test_5xx_and_rate_limit_answers_are_retried_with_backoff_and_make_one_order(
    bybit: Venue, fault: str
) -> None:
    bybit.fake.fail_next(fault, 2)
    with bybit.engine.client() as client:
        client.prepare("f-1", "BTCUSDT", "buy", 0.01)
        assert client.confirm("f-1")["type"] == "ACCEPTED"
    assert list(bybit.fake.orders) == [client_order_id("f-1")]
    creates = [c.at for c in bybit.fake.calls if c.path == "/v5/order/create"]
    assert len(creates) == 2, "the second create came after a look-up said it was not placed"
    assert any(
        creates[0] < c.at < creates[1]
        for c in bybit.fake.calls
        if c.path in ("/v5/order/realtime", "/v5/order/history")
    )
    gaps = [b - a for a, b in itertools.pairwise(creates)]
    assert all(gap >= 0.05 for gap in gaps), "backed off"


def test_a_kill_after_journaling_resolves_the_order_after_restart_without_sending_it_twice(
    bybit: Venue,
) -> None:
    engine = bybit.engine
    with engine.client() as client:
        client.prepare("k-1", "BTCUSDT", "buy", 0.01)
    old = engine.pids()["venue:ex"]
    engine.control({"cmd": "fault", "role": "venue:ex", "at": "adapter.after_journal"})
    with engine.client() as client:
        first = client.confirm("k-1")
    assert first["type"] == "REJECTED" and first["code"] == "INTERNAL", "no answer from a dead adapter"
    wait_for(lambda: engine.pids().get("venue:ex") not in (None, old), 10, 0.05, "the adapter restarted")
    wait_for(lambda: client_order_id("k-1") in bybit.fake.orders, 10, 0.05, "the journaled order sent")

    with engine.client() as client:
        wait_for(lambda: _accepted(client, "k-1"), 10, 0.1, "the resent CONFIRM accepted")
    assert bybit.creates() == 1, "sent once"


def test_a_kill_while_the_venue_holds_the_answer_adopts_the_placed_order_after_restart(bybit: Venue) -> None:
    engine = bybit.engine
    bybit.fake.fail_next("timeout")  # placed at once; the answer comes after 3 s
    with engine.client() as client:
        client.prepare("k-2", "BTCUSDT", "buy", 0.01)
        client.send({"type": "CONFIRM", "signal_id": "k-2"})
        wait_for(lambda: client_order_id("k-2") in bybit.fake.orders, 5, 0.01, "the order at the venue")
        old = engine.pids()["venue:ex"]
        os.kill(old, signal.SIGKILL)
    wait_for(lambda: engine.pids().get("venue:ex") not in (None, old), 10, 0.05, "the adapter restarted")
    with engine.client() as client:
        wait_for(lambda: _accepted(client, "k-2"), 10, 0.1, "the resent CONFIRM accepted")
    wait_for(
        lambda: engine.actor("position:BTCUSDT")["detail"]["net"].get("ex") == pytest.approx(0.01),
        10,
        0.1,
        "the fill, found by polling after the restart",
    )
    assert bybit.creates() == 1, "adopted, never sent again"
    assert engine.actor("position:BTCUSDT")["detail"]["fills"] == 1


def _accepted(client: Any, signal_id: str) -> dict | None:
    reply = client.confirm(signal_id)
    return reply if reply["type"] == "ACCEPTED" else None


def test_a_burst_beyond_the_rate_limit_is_paced_or_refused_busy_and_never_exceeds_it(tmp_path: Path) -> None:
    venue = Venue(tmp_path, "bybit-linear", "max_queue_wait_ms = 300\n").start()
    try:
        with venue.engine.client() as client:
            for i in range(30):
                assert client.prepare(f"b-{i}", "BTCUSDT", "buy", 0.001)["type"] == "PREPARED"
            ids = [client.send({"type": "CONFIRM", "signal_id": f"b-{i}"}) for i in range(30)]
            replies = [client.wait(req_id, 15) for req_id in ids]
        outcomes = [r["type"] if r["type"] == "ACCEPTED" else r["code"] for r in replies]
        assert set(outcomes) == {"ACCEPTED", "BUSY"}, outcomes
        accepted = {client_order_id(r["signal_id"]) for r in replies if r["type"] == "ACCEPTED"}
        assert set(venue.fake.orders) == accepted, "BUSY placed nothing; ACCEPTED placed one each"
        starts = sorted(c.at for c in venue.fake.calls if c.signed)
        busiest = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
        assert busiest <= 10, f"{busiest} requests in one second (Bybit publishes 10/s)"
    finally:
        venue.stop()


def test_titan_venues_lists_connection_rate_headroom_last_error_and_in_flight_orders(bybit: Venue) -> None:
    engine = bybit.engine
    with engine.client() as client:
        client.prepare("l-1", "BTCUSDT", "buy", 0.01, order_type="limit", price=50000.0)
        assert client.confirm("l-1")["type"] == "ACCEPTED"

    def venues(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            titan_cmd("venues", "--config", str(engine.config), *extra),
            env=engine.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    (row,) = json.loads(venues("--json").stdout)
    assert (row["venue"], row["exchange"], row["connection"]) == ("ex", "bybit", "ready")
    assert row["rate_limit"]["limit_per_s"] == 8.0 and row["rate_limit"]["published_per_s"] == 10.0
    assert [o["client_order_id"] for o in row["in_flight"]] == [client_order_id("l-1")]
    assert row["stream"] == "off" and "ws_base_url" in row["stream_error"], "no stream URL: polling only"
    text = venues().stdout
    assert "ready" in text and client_order_id("l-1") in text and "stream: base_url is set" in text

    bybit.fake.outage = True
    row = wait_for(
        lambda: next((r for r in json.loads(venues("--json").stdout) if r["last_error"]), None),
        20,
        0.2,
        "the error shown",
    )
    assert row["connection"] == "degraded" and "bad gateway" in row["last_error"]
