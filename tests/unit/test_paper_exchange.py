"""The paper venue behind the one `Exchange` interface: ccxt-shaped answers,
its own files, its private stream, its simulated outage, and one lock
between the loop's coroutines and the handlers' market data."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from titan_actors.venues.errors import DuplicateClientOrderId, VenueRejected, VenueUnreachable
from titan_actors.venues.exchange import order_status
from titan_actors.venues.paper import PaperExchange

D = Decimal


def _open(tmp_path: Path, **extra: Any) -> PaperExchange:
    cfg = {"name": "paper", "reference_prices": {"BTCUSDT": 60000}, **extra}
    return PaperExchange.from_config(cfg, data_dir=str(tmp_path), retention_ms=86_400_000)


def _order(coid: str, side: str, qty: str, order_type: str = "market", price: str | None = None,
           **extra: Any) -> dict[str, Any]:
    return {"client_order_id": coid, "symbol": "BTCUSDT", "side": side, "quantity": D(qty),
            "order_type": order_type, "price": D(price) if price else None, **extra}


def test_a_market_order_is_answered_as_ccxt_would_with_its_trade_and_position(tmp_path: Path) -> None:
    async def run() -> None:
        venue = _open(tmp_path)
        await venue.start()
        answer = await venue.create(**_order("c1", "buy", "0.3"))
        assert order_status(answer) == "FILLED" and answer["filled"] == D("0.3")
        assert answer["clientOrderId"] == "c1" and answer["id"] == "P1"
        trades, more = await venue.my_trades("BTCUSDT", 0)
        assert more == [] and [(t["clientOrderId"], t["order"], t["amount"], t["price"]) for t in trades] \
            == [("c1", "P1", D("0.3"), D(60000))]
        assert trades[0]["fee"]["cost"] == D("0.3") * 60000 * D("5.5") / 10_000
        assert await venue.position("BTCUSDT") == (D("0.3"), D(60000))
        assert (await venue.fetch_by_client_id(client_order_id="c1", symbol="BTCUSDT"))["status"] == "closed"
        assert await venue.fetch_by_client_id(client_order_id="nobody", symbol="BTCUSDT") is None
        await venue.close()
    asyncio.run(run())


def test_a_resting_order_fills_from_market_data_and_the_stream_carries_it(tmp_path: Path) -> None:
    async def run() -> None:
        venue = _open(tmp_path)
        await venue.start()
        orders = asyncio.ensure_future(venue.watch("orders"))  # a stream carries what follows it
        trades = asyncio.ensure_future(venue.watch("trades"))
        await asyncio.sleep(0.01)
        await venue.create(**_order("r1", "buy", "1", "limit", "59000"))
        assert [o["clientOrderId"] for o in await venue.open_orders("BTCUSDT")] == ["r1"]
        assert [o["status"] for o in (await asyncio.wait_for(orders, 2))["BTCUSDT"]] == ["open"]
        await asyncio.sleep(0.01)
        assert not trades.done(), "nothing traded yet: the stream waits"
        venue.market_data("BTCUSDT", D(58900), D(58950), D(58950))
        batch = await asyncio.wait_for(trades, 2)
        (trade,) = batch["BTCUSDT"]
        assert (trade["clientOrderId"], trade["amount"], trade["price"], trade["takerOrMaker"]) == \
            ("r1", D(1), D(59000), "maker")
        assert await venue.open_orders("BTCUSDT") == []
        await venue.close()
    asyncio.run(run())


def test_refusals_duplicates_and_an_outage_raise_the_interfaces_errors(tmp_path: Path) -> None:
    async def run() -> None:
        venue = _open(tmp_path)
        await venue.start()
        await venue.create(**_order("d1", "buy", "0.1"))
        with pytest.raises(DuplicateClientOrderId):
            await venue.create(**_order("d1", "buy", "0.1"))
        with pytest.raises(VenueRejected, match="reduce-only"):
            await venue.create(**_order("d2", "buy", "0.1", reduce_only=True))
        with pytest.raises(VenueRejected, match="no price"):
            await venue.create(**{**_order("d3", "buy", "0.1"), "symbol": "NOPEUSDT"})
        assert venue.simulate("outage", down=True) == ""
        assert venue.status()["down"] is True
        for call in (venue.create(**_order("d4", "buy", "0.1")), venue.position("BTCUSDT"),
                     venue.open_orders("BTCUSDT"), venue.my_trades("BTCUSDT", 0)):
            with pytest.raises(VenueUnreachable):
                await call
        venue.simulate("outage", down=False)
        assert (await venue.position("BTCUSDT"))[0] == D("0.1")
        assert venue.simulate("teleport") == "unknown simulation 'teleport'"
        await venue.close()
    asyncio.run(run())


def test_its_book_survives_a_restart_and_its_files_are_let_go_at_close(tmp_path: Path) -> None:
    async def first() -> None:
        venue = _open(tmp_path)
        await venue.start()
        await venue.create(**_order("k1", "buy", "0.5"))
        await venue.create(**_order("k2", "sell", "0.2", "limit", "61000"))
        closing = venue.close()
        await _open(tmp_path).close()  # its files were let go at once: open again before it is awaited
        await closing

    async def second() -> None:
        venue = _open(tmp_path)
        await venue.start()
        assert await venue.position("BTCUSDT") == (D("0.5"), D(60000))
        assert [o["clientOrderId"] for o in await venue.open_orders("BTCUSDT")] == ["k2"]
        trades, _ = await venue.my_trades("BTCUSDT", 0)
        assert [t["clientOrderId"] for t in trades] == ["k1"]
        assert venue.status()["orders_placed"] == 2
        with pytest.raises(DuplicateClientOrderId):
            await venue.create(**_order("k1", "buy", "0.5"))
        await venue.close()
    asyncio.run(first())
    asyncio.run(second())
    assert oct((tmp_path / "paper" / "paper").stat().st_mode & 0o777) == "0o700"


def test_a_market_order_with_latency_rests_until_its_time_then_fills_on_the_stream(tmp_path: Path) -> None:
    async def run() -> None:
        venue = _open(tmp_path, latency_ms=50)
        await venue.start()
        trades = asyncio.ensure_future(venue.watch("trades"))
        await asyncio.sleep(0.01)
        answer = await venue.create(**_order("l1", "buy", "0.2"))
        assert order_status(answer) == "ACCEPTED" and answer["filled"] == 0
        batch = await asyncio.wait_for(trades, 2)
        assert [t["clientOrderId"] for t in batch["BTCUSDT"]] == ["l1"]
        await venue.close()
    asyncio.run(run())


def test_market_data_from_another_thread_never_races_the_loops_requests(tmp_path: Path) -> None:
    """Handlers may run on thespian's thread while the loop runs requests:
    the venue's lock keeps its book whole (every fill in the position)."""
    async def run() -> None:
        venue = _open(tmp_path)
        await venue.start()
        stop = threading.Event()

        def quotes() -> None:
            price = 60000
            while not stop.is_set():
                price = 59000 if price == 61000 else 61000
                venue.market_data("BTCUSDT", D(price - 1), D(price), D(price))

        feeder = threading.Thread(target=quotes)
        feeder.start()
        try:
            for i in range(100):
                await venue.create(**_order(f"t{i}", "buy", "0.01", "limit", "60000"))
        finally:
            stop.set()
            feeder.join()
        venue.market_data("BTCUSDT", D(59000), D(59001), D(59001))  # everything still resting fills
        trades, _ = await venue.my_trades("BTCUSDT", 0)
        assert len({t["clientOrderId"] for t in trades}) == 100
        assert (await venue.position("BTCUSDT"))[0] == sum((t["amount"] for t in trades), D(0)) == D(1)
        await venue.close()
    asyncio.run(run())


def test_the_paper_venue_and_a_ccxt_exchange_both_implement_every_member_of_the_one_interface(
        tmp_path: Path) -> None:
    import inspect

    from titan_actors.venues.ccxt_venue import CcxtVenue
    from titan_actors.venues.exchange import Exchange

    members = {name for name in vars(Exchange) if not name.startswith("_")} | set(Exchange.__annotations__)
    paper = _open(tmp_path)
    ccxt = CcxtVenue.from_config({"exchange": "bybit", "symbols": ["BTCUSDT"]})
    for venue in (paper, ccxt):
        for name in sorted(members):
            assert hasattr(venue, name), f"{type(venue).__name__} lacks {name}"
            wanted = getattr(Exchange, name, None)
            if inspect.iscoroutinefunction(wanted):
                assert inspect.iscoroutinefunction(getattr(venue, name)), f"{type(venue).__name__}.{name}"
    asyncio.run(paper.close())
