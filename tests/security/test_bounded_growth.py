"""Bounded growth: final replies, final orders and fill keys are retired
after the retention, a chunk at a time; throttles, the bridge's memory and
the events stream are bounded; an operator's stream limits are kept."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import orjson

from tests.support.engine import FAST_SUPERVISION, RunningEngine, wait_for
from titan_actors.actors.gateway import IpcGateway
from titan_actors.actors.venue import OrderJournal
from titan_actors.domain.orders import confirm, order_from_intent, with_status
from titan_actors.domain.signals import parse_intent
from titan_actors.runtime.retention import DAY_MS, Retention
from titan_actors.runtime.store import Store

NOW = 1_800_000_000_000
WEEK = 7 * DAY_MS


def test_retention_retires_only_what_is_older_and_a_chunk_at_a_time(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s"))
    retention = Retention(store, b"ret:", WEEK, chunk=10)
    try:
        for i in range(25):
            key = b"old:%d" % i
            store.write_batch([(key, b"x"), retention.index(NOW - WEEK - 1000 + i, [key])])
        store.write_batch([(b"young", b"y"), retention.index(NOW - WEEK + 60_000, [b"young"])])
        assert retention.prune(NOW) is True  # ten done, more due: the actor works on in between
        assert len(list(store.items(b"old:"))) == 15
        while retention.prune(NOW):
            pass
        assert list(store.items(b"old:")) == [] and store.get(b"young") == b"y"
        assert len(list(store.items(b"ret:"))) == 1
    finally:
        store.close()


def test_final_replies_are_retired_after_the_retention(tmp_path: Path) -> None:
    gateway = IpcGateway.__new__(IpcGateway)  # the store logic only
    gateway.store = Store(str(tmp_path / "gateway"))
    gateway.retention = Retention(gateway.store, b"ret:", WEEK)
    try:
        gateway._persist(("s1", "CONFIRM"), {"type": "ACCEPTED", "req_id": "r", "ts": 1})
        assert gateway._stored(("s1", "CONFIRM"))["type"] == "ACCEPTED"
        gateway.retention.prune(int(time.time() * 1000) + DAY_MS)
        assert gateway._stored(("s1", "CONFIRM")) is not None, "kept a day later"
        gateway.retention.prune(int(time.time() * 1000) + WEEK + 60_000)
        assert gateway._stored(("s1", "CONFIRM")) is None
    finally:
        gateway.store.close()


def test_final_orders_leave_the_journal_after_the_retention_and_live_ones_never(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "venue"))
    journal = OrderJournal(store, Retention(store, b"ret:", WEEK))
    try:
        intents = [parse_intent({"signal_id": f"j-{i}", "symbol": "BTCUSDT", "side": "buy", "quantity": 1,
                                 "order_type": "market"}, venues={"paper": frozenset({"BTCUSDT"})},
                                default_venue="paper") for i in range(2)]
        done, live = (order_from_intent(intent, f"c{i}", NOW) for i, intent in enumerate(intents))
        store.write_batch([w for o in (done, live) for w in journal.writes(o) if w[1] is not None])
        final = with_status(confirm(done, NOW), "FILLED", NOW)
        writes = journal.writes(final)
        store.write_batch([w for w in writes if w[1] is not None], [k for k, v in writes if v is None])
        journal.retention.prune(NOW + WEEK + 1000)
        assert journal.get("c0") is None and journal.get("c1") is not None
    finally:
        store.close()


def _stream_config(url: str) -> object:
    async def run() -> object:
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info("TITAN_EXECUTION")).config
        finally:
            await nc.close()

    return asyncio.run(run())


def _set_max_age(url: str, seconds: float) -> None:
    async def run() -> None:
        import dataclasses

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            config = (await js.stream_info("TITAN_EXECUTION")).config
            await js.update_stream(dataclasses.replace(config, max_age=seconds))
        finally:
            await nc.close()

    asyncio.run(run())


def test_the_stream_gets_the_configured_limits_and_keeps_an_operators(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + "[nats]\nstream_max_age_s = 86400\n"
                                                      "stream_max_bytes = 1000000000\n").start()
    try:
        config = _stream_config(engine.nats_url)
        assert (config.max_age, config.max_bytes, config.duplicate_window) == (86400, 1_000_000_000, 900)
        _set_max_age(engine.nats_url, 3600)
        before = engine.cells()["nats"]
        engine.kill("nats")  # a new bridge connects and checks the stream again
        wait_for(lambda: engine.cells().get("nats") not in (None, before), 10, 0.05, "the bridge restarted")
        wait_for(lambda: engine.actor("nats")["detail"]["connected"], 10, 0.05, "connected")
        assert _stream_config(engine.nats_url).max_age == 3600
    finally:
        engine.stop()
    assert engine.leftovers() == []


def test_quotes_for_markets_nobody_trades_leave_no_state(engine: RunningEngine) -> None:
    async def flood() -> None:
        nc = await nats.connect(engine.nats_url)
        try:
            for i in range(500):
                await nc.publish(f"titan.data.market.ticker.v1.ZZ{i}USDT", orjson.dumps({"bid": 1, "ask": 2}))
            await nc.publish("titan.data.market.ticker.v1.BTCUSDT", orjson.dumps({"bid": 1, "ask": 2}))
            await nc.flush()
        finally:
            await nc.close()

    asyncio.run(flood())
    wait_for(lambda: engine.actor("nats")["detail"]["quotes_dropped"] == 500, 5, 0.05, "dropped")
    prices = wait_for(lambda: engine.actor("risk")["detail"]["prices"], 5, 0.05, "a price")
    assert set(prices) == {"BTCUSDT"}


def test_per_strategy_throttles_are_bounded() -> None:
    from titan_actors.actors import risk_guard
    from titan_actors.domain.throttle import TokenBucket

    guard = risk_guard.RiskGuard.__new__(risk_guard.RiskGuard)
    guard.strategy_buckets = {f"s{i}": TokenBucket(5.0, 0.0) for i in range(risk_guard._MAX_STRATEGY_BUCKETS)}
    busy = guard.strategy_buckets["s7"]
    busy.take(100.0)  # s7 sent an order just now: its state matters
    guard._bound_buckets(100.0)
    assert list(guard.strategy_buckets) == ["s7"], "idle (full) buckets go first; a busy one stays"
    guard.strategy_buckets = {f"b{i}": TokenBucket(5.0, 0.0) for i in range(risk_guard._MAX_STRATEGY_BUCKETS)}
    for bucket in guard.strategy_buckets.values():
        bucket.take(0.0)
    guard._bound_buckets(0.0)
    assert len(guard.strategy_buckets) < risk_guard._MAX_STRATEGY_BUCKETS
    assert "b0" not in guard.strategy_buckets, "then the oldest"


def test_the_bridge_keeps_a_bounded_memory_while_nats_is_away_and_loses_nothing(tmp_path: Path) -> None:
    from supervisors.embedded_nats import EmbeddedNats
    from tests.support.nats import read_stream

    server = EmbeddedNats(tmp_path / "external", auth={"user": "ops", "password": "p" * 24})
    server.start()
    (tmp_path / "e").mkdir()
    engine = RunningEngine(tmp_path / "e", FAST_SUPERVISION + "[nats]\nmax_events_in_memory = 20\n")
    engine.env["NATS_URL"] = server.client_url
    try:
        engine.start()
        wait_for(lambda: engine.actor("nats")["detail"]["connected"], 10, 0.05, "connected")
        server.stop()
        wait_for(lambda: not engine.actor("nats")["detail"]["connected"], 10, 0.05, "disconnected")
        with engine.client() as client:
            for i in range(15):  # 3+ events each
                client.prepare(f"spill-{i}", "BTCUSDT", "buy", 0.01)
                client.confirm(f"spill-{i}")
        detail = wait_for(lambda: (d := engine.actor("nats")["detail"])["spilled"] and d, 10, 0.05, "spilled")
        assert detail["outbox_depth"] <= 20
        server.start()
        wait_for(lambda: (d := engine.actor("nats")["detail"])["connected"] and d["outbox_depth"] == 0
                 and not d["spilled"], 30, 0.1, "everything published")
        reports = [e for e in read_stream(server.client_url, "titan.evt.execution.report.v1.>")
                   if e["data"]["signal_id"].startswith("spill-")]
        assert {e["data"]["signal_id"] for e in reports} == {f"spill-{i}" for i in range(15)}
        filled = [e for e in reports if e["type"] == "OrderFilled"]
        assert len(filled) == 15
    finally:
        engine.stop()
        server.stop()
    assert engine.leftovers() == []
