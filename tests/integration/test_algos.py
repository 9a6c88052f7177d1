"""Execution algorithms (issue 19, item 1): a parent order sent as child
orders through the normal path — TWAP on a schedule, ICEBERG one resting
child at a time — that resumes after its actor or its worker is killed and
never sends a child twice."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats

from tests.support.engine import FAST_SUPERVISION, RunningEngine, titan_cmd, wait_for
from tests.support.nats import read_stream
from titan_actors.domain.ids import client_order_id
from titan_actors.tools.control import ControlError
from titan_actors.wire import subjects


def children(engine: RunningEngine, parent: str) -> dict[str, dict[str, Any]]:
    try:
        journal = engine.control({"cmd": "venue_orders"})["journal"]
    except ControlError:  # the adapter is restarting (its worker was killed)
        return {}
    return {o["signal_id"]: o for o in journal.values() if o["signal_id"].startswith(parent + ".")}


def parent_status(engine: RunningEngine, parent: str) -> str:
    try:
        return engine.control({"cmd": "venue_orders"})["journal"][client_order_id(parent)]["status"]
    except ControlError:  # the adapter is restarting (its worker was killed)
        return ""


def _trades(engine: RunningEngine) -> list[dict[str, Any]]:
    answer = engine.control({"cmd": "ledger", "path": "/api/trades", "params": {}})
    return answer["answer"]["trades"]


def price(engine: RunningEngine, bid: int, ask: int) -> None:
    engine.control({"cmd": "price", "symbol": "BTCUSDT", "bid": bid, "ask": ask, "last": (bid + ask) / 2})


def submitted_at(engine: RunningEngine, parent: str) -> list[int]:
    events = read_stream(engine.nats_url, subjects.report("BTCUSDT"))
    return sorted(e["ts"] for e in events if e["type"] == "OrderSubmitted"
                  and e["data"]["signal_id"].startswith(parent + "."))


def test_a_twap_sends_its_slices_on_schedule_and_fills_exactly_the_parent(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            reply = client.prepare("tw-1", "BTCUSDT", "buy", 0.5,
                                   algo={"type": "TWAP", "duration_s": 2, "slices": 5})
            assert reply["type"] == "PREPARED", reply
            assert client.confirm("tw-1")["type"] == "ACCEPTED"
            wait_for(lambda: parent_status(engine, "tw-1") == "FILLED", 10, 0.1, "the parent filled")
            pushes = []
            try:
                while True:
                    pushes.append(client.next_execution(timeout=0.5))
            except TimeoutError:
                pass
        kids = children(engine, "tw-1")
        assert sorted(kids) == [f"tw-1.{n}" for n in range(1, 6)]
        assert all(k["quantity"] == 0.1 and k["status"] == "FILLED" for k in kids.values()), kids
        at = submitted_at(engine, "tw-1")
        events = read_stream(engine.nats_url, subjects.report("BTCUSDT"))
        confirmed = next(e["data"]["confirmed_at"] for e in events if e["data"]["signal_id"] == "tw-1")
        late = [t - (confirmed + 400 * k) for k, t in enumerate(at)]  # slice k is due 400k ms after CONFIRM
        assert len(at) == 5 and all(0 <= ms <= 600 for ms in late), late  # never early; a 100 ms tick, a hop
        assert engine.actor("position:BTCUSDT")["detail"]["net"]["paper"] == 0.5
        parent = [p for p in pushes if p["signal_id"] == "tw-1"]
        assert parent and parent[-1]["status"] == "FILLED" and parent[-1]["filled_qty"] == 0.5
        assert any(p["status"] == "PARTIALLY_FILLED" for p in parent), "progress pushed on the way"
        wait_for(lambda: not [a for a in engine.status()["actors"] if a["role"] == "algo:tw-1"], 5, 0.1,
                 "the algo actor gone once done")
        wait_for(lambda: not (engine.data_dir / "algos" / "tw-1").exists(), 5, 0.1, "its store deleted")
        # The report plots the children against the schedule and counts them.
        out = tmp_path / "report"
        wait_for(lambda: len([t for t in _trades(engine) if t.get("parent") == "tw-1"]) == 5, 5, 0.1,
                 "the ledger has the children")
        command = titan_cmd("report", "--out", str(out), "--json", "--config", str(engine.config))
        result = subprocess.run(command, env=engine.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["algos"]["tw-1"] == {"type": "TWAP", "children": 5, "quantity": 0.5, "filled": 0.5}
        assert summary["filled_orders"] == 5, "the parent is not a trade of its own"
        assert (out / "algo_tw-1.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        engine.stop()


def test_a_twap_whose_actor_and_worker_are_killed_completes_without_a_child_twice(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            assert client.prepare("tk-1", "BTCUSDT", "sell", 0.8,
                                  algo={"type": "TWAP", "duration_s": 3.2, "slices": 8})["type"] == "PREPARED"
            assert client.confirm("tk-1")["type"] == "ACCEPTED"
        wait_for(lambda: len(children(engine, "tk-1")) >= 2, 5, 0.05, "two slices out")
        engine.kill("algo:tk-1")
        wait_for(lambda: len(children(engine, "tk-1")) >= 5, 6, 0.05, "more slices after the restart")
        engine.kill("algo:tk-1", worker=True)
        wait_for(lambda: parent_status(engine, "tk-1") == "FILLED", 15, 0.1, "the parent filled")
        kids = children(engine, "tk-1")
        assert sorted(kids) == sorted(f"tk-1.{n}" for n in range(1, 9))
        assert sum(Decimal(str(k["filled_qty"])) for k in kids.values()) == Decimal("0.8")
        assert engine.venue()["orders_placed"] == 8, "every child sent once"
        assert engine.actor("position:BTCUSDT")["detail"]["net"]["paper"] == -0.8
    finally:
        engine.stop()


def test_an_iceberg_shows_one_child_at_a_time_and_a_cancel_of_the_parent_stops_it(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            reply = client.prepare("ib-1", "BTCUSDT", "buy", 0.3, "limit", price=59000.0,
                                   algo={"type": "ICEBERG", "display_quantity": 0.1})
            assert reply["type"] == "PREPARED", reply
            assert client.confirm("ib-1")["type"] == "ACCEPTED"
            for n in (1, 2):
                wait_for(lambda n=n: children(engine, "ib-1").get(f"ib-1.{n}", {}).get("status")
                         == "ACCEPTED", 5, 0.05, f"child {n} resting")  # journaled is not yet at the venue
                if n == 2:
                    engine.kill("algo:ib-1")  # mid-run: it comes back from its store
                assert engine.venue()["open_orders"] == 1, "one child shown at a time"
                price(engine, 58990, 59000)
                wait_for(lambda n=n: children(engine, "ib-1")[f"ib-1.{n}"]["status"] == "FILLED", 5, 0.05,
                         f"child {n} filled")
                price(engine, 59990, 60010)
            wait_for(lambda: "ib-1.3" in children(engine, "ib-1"), 5, 0.05, "the third child")
            assert children(engine, "ib-1")["ib-1.3"]["quantity"] == 0.1
            assert client.cancel("ib-1")["type"] == "CANCELED"
            wait_for(lambda: engine.venue()["open_orders"] == 0, 5, 0.05, "its resting child canceled")
            assert parent_status(engine, "ib-1") == "CANCELED"
            time.sleep(0.5)
            assert sorted(children(engine, "ib-1")) == ["ib-1.1", "ib-1.2", "ib-1.3"], "none after the cancel"
        with engine.client() as c:
            iceberg = {"type": "ICEBERG", "display_quantity": 0.1}
            refused = c.prepare("ib-2", "BTCUSDT", "buy", 0.3, algo=iceberg)  # a market order
            assert refused["code"] == "INVALID" and refused["reason"].startswith("algo:"), refused
            refused = c.prepare("ib-3", "BTCUSDT", "buy", 0.3, algo={"type": "TWAP", "duration_s": 1})
            assert refused["code"] == "INVALID" and "slices" in refused["reason"]
    finally:
        engine.stop()


def journal_of(engine: RunningEngine) -> dict[str, dict[str, Any]]:
    return engine.control({"cmd": "venue_orders"})["journal"]


def test_a_vwap_sizes_its_slices_by_the_volume_profile(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            algo = {"type": "VWAP", "duration_s": 1, "slices": 3, "profile": [1, 3, 4]}
            assert client.prepare("vw-1", "BTCUSDT", "buy", 0.4, algo=algo)["type"] == "PREPARED"
            assert client.confirm("vw-1")["type"] == "ACCEPTED"
        wait_for(lambda: parent_status(engine, "vw-1") == "FILLED", 10, 0.1, "the parent filled")
        kids = children(engine, "vw-1")
        assert [kids[f"vw-1.{n}"]["quantity"] for n in (1, 2, 3)] == [0.05, 0.15, 0.2]
    finally:
        engine.stop()


def test_a_chase_follows_the_bid_then_crosses_once_out_of_chases(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        price(engine, 59990, 60010)
        with engine.client() as client:
            algo = {"type": "CHASE", "chase_ticks": 5, "max_chases": 2, "cross": True}
            assert client.prepare("ch-1", "BTCUSDT", "buy", 0.2, algo=algo)["type"] == "PREPARED"
            assert client.confirm("ch-1")["type"] == "ACCEPTED"
        for n, (bid, ask) in enumerate([(60000, 60020), (60010, 60030), (60020, 60040)], start=1):
            wait_for(lambda n=n: children(engine, "ch-1").get(f"ch-1.{n}", {}).get("status") == "ACCEPTED", 5,
                     0.05, f"child {n} resting")
            assert engine.venue()["open_orders"] == 1
            price(engine, bid, ask)  # the market leaves it: canceled, posted again at the new bid
        wait_for(lambda: parent_status(engine, "ch-1") == "FILLED", 10, 0.1, "crossed and filled")
        kids = children(engine, "ch-1")
        assert sorted(kids) == ["ch-1.1", "ch-1.2", "ch-1.3", "ch-1.4"]
        assert [kids[f"ch-1.{n}"]["status"] for n in (1, 2, 3, 4)] == ["CANCELED"] * 3 + ["FILLED"]
        events = read_stream(engine.nats_url, subjects.report("BTCUSDT"))
        submitted = {e["data"]["signal_id"]: e["data"] for e in events
                     if e["type"] == "OrderSubmitted" and e["data"]["signal_id"].startswith("ch-1.")}
        terms = [(submitted[f"ch-1.{n}"]["order_type"], submitted[f"ch-1.{n}"]["price"]) for n in range(1, 5)]
        assert terms == [("limit", 59990), ("limit", 60000), ("limit", 60010), ("market", None)], terms
        assert engine.actor("position:BTCUSDT")["detail"]["net"]["paper"] == 0.2
    finally:
        engine.stop()


def test_a_vwap_with_a_participation_cap_takes_at_most_its_share_of_the_traded_volume(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    volumes: list[float] = []
    stop = threading.Event()

    def feed() -> None:  # a ticker whose cumulative volume grows 2 BTC a second
        async def run() -> None:
            nc = await nats.connect(engine.nats_url)
            volume = 1000.0
            while not stop.is_set():
                volumes.append(volume)
                await nc.publish(f"{subjects.MARKET_TICKER}.BTCUSDT", json.dumps(
                    {"bid": 59990, "ask": 60010, "last": 60000, "volume": volume,
                     "ts": time.time_ns() // 1_000_000}).encode())
                await nc.flush()
                volume = round(volume + 0.1, 6)
                await asyncio.sleep(0.05)
            await nc.close()
        asyncio.run(run())

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        wait_for(lambda: len(volumes) > 5, 5, 0.05, "the ticker flowing")
        with engine.client() as client:
            algo = {"type": "VWAP", "duration_s": 2, "slices": 4, "max_participation_pct": 10}
            assert client.prepare("vp-1", "BTCUSDT", "buy", 1.0, algo=algo)["type"] == "PREPARED"
            start = volumes[-1]
            assert client.confirm("vp-1")["type"] == "ACCEPTED"
        wait_for(lambda: parent_status(engine, "vp-1") == "EXPIRED", 10, 0.1, "the schedule over, short")
        traded = Decimal(str(volumes[-1])) - Decimal(str(start))
        kids = children(engine, "vp-1")
        sent = sum(Decimal(str(k["quantity"])) for k in kids.values())
        assert 2 <= len(kids) <= 3, kids  # the first slice had no volume to take part in
        assert 0 < sent <= traded / 10, (sent, traded)
        assert engine.actor("position:BTCUSDT")["detail"]["net"]["paper"] == float(sent)
    finally:
        stop.set()
        feeder.join(5)
        engine.stop()


def test_a_twap_with_a_limit_never_fills_beyond_it(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        price(engine, 59990, 60010)  # the ask is above the limit: the first slice cannot fill
        with engine.client() as client:
            algo = {"type": "TWAP", "duration_s": 1.5, "slices": 3, "limit_price": 60000}
            assert client.prepare("tl-1", "BTCUSDT", "buy", 0.3, algo=algo)["type"] == "PREPARED"
            assert client.confirm("tl-1")["type"] == "ACCEPTED"
            wait_for(lambda: children(engine, "tl-1").get("tl-1.1", {}).get("status")
                     in ("EXPIRED", "CANCELED"), 5, 0.05, "the first slice expired (IOC at the limit)")
            price(engine, 59985, 59995)
        wait_for(lambda: parent_status(engine, "tl-1") == "EXPIRED", 10, 0.1, "the schedule over")
        kids = children(engine, "tl-1")
        assert [kids[f"tl-1.{n}"]["filled_qty"] for n in (1, 2, 3)] == [0, 0.1, 0.1]
        events = read_stream(engine.nats_url, subjects.report("BTCUSDT"))
        fills = [e["data"]["last_fill"]["price"] for e in events
                 if e["data"]["signal_id"].startswith("tl-1.") and e["data"].get("last_fill")]
        assert fills and all(p <= 60000 for p in fills), fills
    finally:
        engine.stop()
