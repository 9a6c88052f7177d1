"""Market data from NATS: the subject names the market, a bad quote is
dropped and counted, and a price too old is not used for a market order."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path

import nats
import pytest

from tests.support.engine import FAST_SUPERVISION, RunningEngine, wait_for
from titan_actors.actors.nats_bridge import quote_of
from titan_actors.domain.risk_rules import Exposure, OrderView, Policy, check_order

NOW = 1_800_000_000_000
TICKER = "titan.data.market.ticker.v1.BTCUSDT"
BOOK = "titan.data.market.book.v1.ETHUSDT"


def test_the_symbol_is_the_subjects_not_the_bodys() -> None:
    quote = quote_of(TICKER, b'{"symbol": "ETHUSDT", "bid": 100, "ask": 101, "last": 100.5, "ts": 5}', NOW)
    assert (quote.symbol, quote.bid, quote.ask, quote.last, quote.ts) == ("BTCUSDT", 100, 101, 100.5, 5)
    book = quote_of(BOOK, b'{"bids": [[10, 1]], "asks": [[11, 2]]}', NOW)
    assert (book.symbol, book.last, book.ts) == ("ETHUSDT", 10.5, NOW)


@pytest.mark.parametrize(("body", "why"), [
    (b'{"bid": 102, "ask": 101}', "crossed"),
    (b'{"bid": 0, "ask": 101}', "finite positive"),
    (b'{"bid": -5, "ask": 101}', "finite positive"),
    (b'{"bid": 1e999, "ask": 1e999}', "not JSON|finite"),
    (b'{"bid": NaN, "ask": 101}', "not JSON"),
    (b'{"bid": "100", "ask": 101}', "not a number"),
    (b'{"bid": true, "ask": 101}', "not a number"),
    (b'{"ask": 101}', "not a number"),
    (b'[1, 2]', "not a JSON object"),
])
def test_a_bad_quote_is_refused_with_a_reason(body: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        quote_of(TICKER, body, NOW)


def test_a_quote_from_the_future_counts_as_now_and_a_bad_subject_is_refused() -> None:
    assert quote_of(TICKER, b'{"bid": 1, "ask": 2, "ts": 9999999999999}', NOW).ts == NOW
    with pytest.raises(ValueError, match="symbol"):
        quote_of("titan.data.market.ticker.v1.btc-usdt", b'{"bid": 1, "ask": 2}', NOW)


def _market(qty: str = "1", order_type: str = "market") -> OrderView:
    return OrderView(venue="paper", symbol="BTCUSDT", side="buy", qty=Decimal(qty), order_type=order_type,
                     price=None if order_type == "market" else Decimal(100), reduce_only=False)


M, R = Decimal(100), Decimal(50)


def test_a_stale_price_refuses_a_market_order_with_a_named_rule_and_is_not_used() -> None:
    policy = Policy(max_price_age_ms=1000)
    verdicts = check_order(_market(), policy, Exposure(), market=M, market_age_ms=1500, reference=R,
                           venue_rate=None, strategy_rate=None)
    refused = [v for v in verdicts if not v.ok]
    assert [v.rule for v in refused] == ["price_age"] and "1500 ms old" in refused[0].reason
    fresh = check_order(_market(), policy, Exposure(), market=M, market_age_ms=200, reference=R,
                        venue_rate=None, strategy_rate=None)
    assert all(v.ok for v in fresh)
    limit = check_order(_market(order_type="limit"), policy, Exposure(), market=M, market_age_ms=5000,
                        reference=R, venue_rate=None, strategy_rate=None)
    assert all(v.ok for v in limit), "a limit order is judged at its own price"
    off = Policy(max_price_age_ms=0)
    assert all(v.ok for v in check_order(_market(), off, Exposure(), market=M, market_age_ms=10**9,
                                         reference=None, venue_rate=None, strategy_rate=None))


def _publish(url: str, messages: list[tuple[str, dict | bytes]]) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        try:
            for subject, body in messages:
                await nc.publish(subject, body if isinstance(body, bytes) else json.dumps(body).encode())
            await nc.flush()
        finally:
            await nc.close()

    asyncio.run(run())


def test_the_engine_drops_bad_quotes_and_refuses_market_orders_on_a_stale_price(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "\n[risk]\nmax_price_age_ms = 800\n").start()
    try:
        now = time.time_ns() // 1_000_000
        _publish(engine.nats_url, [
            (TICKER, {"symbol": "ETHUSDT", "bid": 60000, "ask": 60001, "last": 60000.5, "ts": now}),
            ("titan.data.market.ticker.v1.ETHUSDT", {"bid": 3001, "ask": 3000, "ts": now}),  # crossed
            ("titan.data.market.ticker.v1.ETHUSDT", b'{"bid": Infinity, "ask": 3000}'),
            ("titan.data.market.ticker.v1.ETHUSDT", {"bid": -1, "ask": 3000, "ts": now}),
        ])
        wait_for(lambda: engine.actor("nats")["detail"]["quotes_dropped"] == 3, 5, 0.05, "three dropped")
        prices = wait_for(lambda: engine.actor("risk")["detail"]["prices"], 5, 0.05, "a price")
        assert set(prices) == {"BTCUSDT"} and prices["BTCUSDT"]["last"] == 60000.5
        with engine.client() as client:
            assert client.prepare("md-fresh", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
            time.sleep(1.0)
            stale = client.prepare("md-stale", "BTCUSDT", "buy", 0.01)
            assert (stale["code"], stale["rule"]) == ("RISK_REJECTED", "price_age")
            assert client.prepare("md-limit", "BTCUSDT", "buy", 0.01, "limit", price=59000.0)["type"] == \
                "PREPARED"
            fresh = {"bid": 60010, "ask": 60011, "ts": time.time_ns() // 1_000_000}
            _publish(engine.nats_url, [(TICKER, fresh)])
            wait_for(lambda: engine.actor("risk")["detail"]["prices"]["BTCUSDT"]["age_ms"] < 500, 5, 0.05,
                     "a fresh price")
            assert client.prepare("md-again", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
    finally:
        engine.stop()
    assert engine.leftovers() == []
