"""Stops that trigger (issue 20, item 3): a price path through a bracket's
stop on each exchange fake. Bybit holds the stop itself (a conditional
order with its trigger direction); where a venue has no native stop through
ccxt the engine holds it and sends a reduce-only market order when the last
price reaches the trigger, and says so in the order's events."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.integration.test_venues import Venue
from tests.support.engine import wait_for
from tests.support.nats import read_stream
from titan_actors.domain.ids import client_order_id, exit_order_id
from titan_actors.wire import subjects


# Each fake; Binance both ways (its algo service, or the engine); MEXC spot is the one where
# ccxt would send the stop as a market order at once.
@pytest.mark.parametrize(("case", "stops"), [("bybit-linear", "native"), ("binance-linear", "native"),
                                             ("binance-linear", "emulated"), ("mexc-spot", "emulated")])
def test_a_price_path_through_the_stop_fires_it_once_and_cancels_the_take_profits(
        tmp_path: Path, case: str, stops: str) -> None:
    venue = Venue(tmp_path, case, f'stops = "{stops}"').start()
    engine, fake = venue.engine, venue.fake
    stop, take_profit = exit_order_id("st-1", "sl"), exit_order_id("st-1", "tp1")
    try:
        assert venue.detail()["stops"] == stops
        with engine.client() as client:
            assert client.prepare("st-1", "BTCUSDT", "buy", 0.01, "limit", price=60000.0, stop_loss=55000.0,
                                  take_profits=[65000.0])["type"] == "PREPARED"
            assert client.confirm("st-1")["type"] == "ACCEPTED"
        wait_for(lambda: take_profit in fake.orders and venue.detail()["live_orders"] == 2, 10, 0.05,
                 "the stop and the take-profit placed")
        # Held by the venue, or by the engine: never sent as a plain market order before its time.
        assert (stop in fake.orders) == (stops == "native")
        if stops == "emulated":  # no market data yet: it could not fire, and status says so
            assert venue.detail()["stops_without_prices"] == ["BTCUSDT"]
        assert fake.position("BTCUSDT") == pytest.approx(0.01)
        for price in (58000.0, 56000.0, 54000.0):  # the market falls through the stop
            fake.move_price("BTCUSDT", price)
            engine.control({"cmd": "price", "venue": "ex", "symbol": "BTCUSDT", "bid": price - 1,
                            "ask": price + 1, "last": price})
        assert venue.detail().get("stops_without_prices", []) == []
        wait_for(lambda: fake.orders.get(take_profit) and fake.orders[take_profit].status == "canceled"
                 and venue.detail()["live_orders"] == 0, 15, 0.05, "the take-profit canceled")
        assert fake.orders[stop].status == "filled" and fake.orders[stop].filled == pytest.approx(0.01)
        assert fake.position("BTCUSDT") == pytest.approx(0.0), "flat at the venue"
        # Binance's algo order fires as an order of its own.
        fired_as = {stop, f"algo-{fake.orders[stop].algo_id}"}
        assert sum(1 for t in fake.trades if t.order.client_id in fired_as) == 1, "the stop fired once"
        wait_for(lambda: engine.actor("position:BTCUSDT")["detail"]["net"].get("ex") == 0, 10, 0.05,
                 "flat in the engine")
        reports = [e["data"] for e in read_stream(engine.nats_url, subjects.report("BTCUSDT"))
                   if e["data"]["client_order_id"] == stop]
        assert reports[-1]["status"] == "FILLED" and reports[-1]["close_reason"] == "stop_loss"
        if stops == "emulated":
            assert any("emulated" in r["reason"] for r in reports), "the events say the engine held it"
        closed = wait_for(lambda: [e["data"] for e in read_stream(engine.nats_url, subjects.TRADE_CLOSED)],
                          10, 0.2, "the trade closed")
        assert [c["close_reason"] for c in closed] == ["stop_loss"]
    finally:
        venue.stop()


@pytest.mark.parametrize("case", ["bybit-linear", "mexc-swap"])  # a native stop, an emulated one
def test_an_entry_canceled_after_a_partial_fill_keeps_exits_for_the_filled_part(
        tmp_path: Path, case: str) -> None:
    venue = Venue(tmp_path, case).start()
    engine, fake = venue.engine, venue.fake
    try:
        with engine.client() as client:
            assert client.prepare("pc-1", "BTCUSDT", "buy", 0.01, "limit", price=50000.0, stop_loss=45000.0,
                                  take_profits=[55000.0])["type"] == "PREPARED"
            assert client.confirm("pc-1")["type"] == "ACCEPTED"
            entry = client_order_id("pc-1")
            wait_for(lambda: entry in fake.orders, 5, 0.02, "the entry at the venue")
            fake.fill(entry, 0.004)
            wait_for(lambda: venue.detail()["fills"] == 1, 10, 0.05, "the partial fill")
            assert client.cancel("pc-1")["type"] == "CANCELED"
        stop, take_profit = exit_order_id("pc-1", "sl"), exit_order_id("pc-1", "tp1")
        wait_for(lambda: take_profit in fake.orders and venue.detail()["live_orders"] == 2, 10, 0.05,
                 "exits for the filled part")
        assert fake.orders[take_profit].qty == pytest.approx(0.004)
        if venue.detail()["stops"] == "native":
            assert fake.orders[stop].qty == pytest.approx(0.004)
        else:  # held by the engine, for the filled part
            assert stop not in fake.orders and venue.detail()["armed_stops"] == 1
            journal = engine.control({"cmd": "venue_orders", "venue": "ex"})["journal"]
            assert [o["status"] for o in journal.values() if o["leg"] == "sl"] == ["ACCEPTED"]
    finally:
        venue.stop()


def _stop_quantity(engine, venue: str) -> float | None:
    journal = engine.control({"cmd": "venue_orders", "venue": venue})["journal"]
    return next((o["quantity"] for o in journal.values() if o["leg"] == "sl"), None)


@pytest.mark.parametrize("case", ["bybit-linear", "mexc-spot"])  # resized at the venue, in the engine
def test_a_take_profit_fill_shrinks_the_stop_to_what_is_left(tmp_path: Path, case: str) -> None:
    venue = Venue(tmp_path, case).start()
    engine, fake = venue.engine, venue.fake
    stop = exit_order_id("sh-1", "sl")
    try:
        with engine.client() as client:
            assert client.prepare("sh-1", "BTCUSDT", "buy", 0.01, "limit", price=60000.0, stop_loss=55000.0,
                                  take_profits=[61000.0, 62000.0])["type"] == "PREPARED"
            assert client.confirm("sh-1")["type"] == "ACCEPTED"
        wait_for(lambda: venue.detail()["live_orders"] == 3, 10, 0.05, "the stop and two take-profits")
        assert _stop_quantity(engine, "ex") == 0.01
        fake.move_price("BTCUSDT", 61500.0)  # the first take-profit (0.005) fills
        wait_for(lambda: _stop_quantity(engine, "ex") == 0.005, 10, 0.05, "the stop resized")
        if venue.detail()["stops"] == "native":
            assert fake.orders[stop].qty == pytest.approx(0.005)
        assert venue.detail()["live_orders"] == 2
    finally:
        venue.stop()


def test_a_take_profit_fill_shrinks_the_paper_stop(tmp_path: Path) -> None:
    from tests.support.engine import FAST_SUPERVISION, RunningEngine

    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        with engine.client() as client:
            assert client.prepare("ps-1", "BTCUSDT", "buy", 1, stop_loss=55000.0,
                                  take_profits=[61000.0, 62000.0])["type"] == "PREPARED"
            assert client.confirm("ps-1")["type"] == "ACCEPTED"
        wait_for(lambda: engine.venue()["open_orders"] == 3, 5, 0.05, "the exits resting")
        engine.control({"cmd": "price", "symbol": "BTCUSDT", "bid": 61400, "ask": 61500, "last": 61450})
        wait_for(lambda: _stop_quantity(engine, "paper") == 0.5, 5, 0.05, "the stop resized")
        venue = engine.control({"cmd": "venue_orders"})["venue"]
        assert venue[stop_id("ps-1")]["quantity"] == 0.5, "resized in the venue's book too"
    finally:
        engine.stop()


def stop_id(signal_id: str) -> str:
    return exit_order_id(signal_id, "sl")


def _resting_bracket(venue: Venue, signal_id: str) -> None:
    """A buy of 0.01 below the market (60,000), with a stop and a take-profit:
    the entry rests at the venue, and so will its take-profit."""
    with venue.engine.client() as client:
        assert client.prepare(signal_id, "BTCUSDT", "buy", 0.01, "limit", price=59000.0, stop_loss=50000.0,
                              take_profits=[65000.0])["type"] == "PREPARED"
        assert client.confirm(signal_id)["type"] == "ACCEPTED"
    wait_for(lambda: client_order_id(signal_id) in venue.fake.orders, 5, 0.02, "the entry at the venue")


def _boots(engine, role: str) -> int:
    """How often `role` has started (0 while it is not answering)."""
    actor = next((a for a in engine.status()["actors"] if a["role"] == role), None)
    return actor["detail"]["boots"] if actor else 0


def _bracket_ids(signal_id: str) -> tuple[str, str, str]:
    return client_order_id(signal_id), exit_order_id(signal_id, "sl"), exit_order_id(signal_id, "tp1")


def _fake_qty(fake, coid: str) -> float | None:
    order = fake.orders.get(coid)
    return round(order.qty, 9) if order is not None else None


def _live_legs(fake, signal_id: str, leg: str) -> list[float]:
    """The quantities of the resting versions of an exit leg at the venue."""
    ids = {exit_order_id(signal_id, leg, v) for v in range(1, 10)}
    return [round(o.qty, 9) for o in fake.orders.values() if o.client_id in ids and o.status == "new"]


# Amended in place (Bybit), replaced by a new order (MEXC; its stop is the engine's, resized in the journal).
@pytest.mark.parametrize("case", ["bybit-linear", "mexc-swap"])
def test_exits_are_placed_on_the_first_fill_and_grow_with_each_partial_fill(
        tmp_path: Path, case: str) -> None:
    venue = Venue(tmp_path, case).start()
    engine, fake = venue.engine, venue.fake
    entry, stop, take_profit = _bracket_ids("gr-1")
    native = venue.detail()["stops"] == "native"
    try:
        _resting_bracket(venue, "gr-1")
        for filled in (0.004, 0.007, 0.01):
            fake.fill(entry, round(filled - fake.orders[entry].filled, 3))
            wait_for(lambda f=filled: _stop_quantity(engine, "ex") == f, 10, 0.05, f"the stop at {filled}")
            wait_for(lambda f=filled: _live_legs(fake, "gr-1", "tp1") == [f], 10, 0.05,
                     f"one take-profit resting for {filled}")
            if native:  # Bybit amends both legs in place
                assert _fake_qty(fake, stop) == filled and _live_legs(fake, "gr-1", "tp1") == [
                    _fake_qty(fake, take_profit)]
            else:  # the stop is the engine's; the take-profit was replaced, the old one canceled
                assert stop not in fake.orders
        versions = sum(1 for v in range(1, 10) if exit_order_id("gr-1", "tp1", v) in fake.orders)
        assert versions == (1 if native else 3)
        assert fake.position("BTCUSDT") == pytest.approx(0.01)
    finally:
        venue.stop()


def test_a_kill_between_a_partial_fill_and_its_exit_resize_leaves_exits_for_exactly_what_filled(
        tmp_path: Path) -> None:
    venue = Venue(tmp_path, "bybit-linear").start()
    engine, fake = venue.engine, venue.fake
    entry, stop, take_profit = _bracket_ids("kr-1")
    try:
        _resting_bracket(venue, "kr-1")
        fake.fill(entry, 0.004)
        wait_for(lambda: (_fake_qty(fake, stop), _fake_qty(fake, take_profit)) == (0.004, 0.004), 10, 0.05,
                 "the exits for the first fill")
        release = fake.hold("/v5/order/amend")
        fake.fill(entry, 0.003)
        wait_for(lambda: any(c.path == "/v5/order/amend" for c in fake.calls[-50:]), 10, 0.02,
                 "the resize on its way")
        boots = venue.detail()["boots"]
        engine.kill("venue:ex", worker=True)
        engine.kill("position:BTCUSDT")
        release.set()  # the resize was lost: the venue never applied it
        del fake.held["/v5/order/amend"]
        wait_for(lambda: _boots(engine, "venue:ex") > boots, 15, 0.1, "the adapter restarted")
        wait_for(lambda: (_fake_qty(fake, stop), _fake_qty(fake, take_profit)) == (0.007, 0.007), 15, 0.05,
                 "the exits fitted to what filled after the restart")
        assert _stop_quantity(engine, "ex") == 0.007
        wait_for(lambda: engine.actor("position:BTCUSDT")["detail"]["net"].get("ex") == 0.007, 10, 0.05,
                 "the position")
    finally:
        venue.stop()


def test_the_fakes_fire_conditional_orders_in_the_direction_each_exchange_documents() -> None:
    from tests.support.fake_binance import FakeBinance
    from tests.support.fake_bybit import FakeBybit

    binance, bybit = FakeBinance().start(), FakeBybit().start()
    try:
        binance.place(client_id="long", symbol="BTCUSDT", side="buy", kind="market", qty=0.02,
                      market="linear")
        for client_id, kind, trigger in (("sl", "STOP_MARKET", 59000), ("tp", "TAKE_PROFIT_MARKET", 61000)):
            body = {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": kind,
                    "quantity": "0.01", "triggerPrice": str(trigger), "reduceOnly": "true",
                    "clientAlgoId": client_id}
            reply = binance.route("POST", "/fapi/v1/algoOrder", {}, urlencode(body))
            assert reply.status == 200 and reply.payload["orderType"] == kind
        binance.move_price("BTCUSDT", 61500.0)  # up through the take-profit only
        assert (binance.orders["tp"].status, binance.orders["sl"].status) == ("filled", "new")
        binance.move_price("BTCUSDT", 58500.0)
        assert binance.orders["sl"].status == "filled" and binance.position("BTCUSDT") == pytest.approx(0.0)
        fired = binance.route("GET", "/fapi/v1/algoOrder", {"clientAlgoId": "sl"}, "").payload
        assert fired["algoStatus"] == "FINISHED" and fired["actualOrderId"] != ""

        bybit.place(client_id="short", symbol="BTCUSDT", side="sell", kind="market", qty=0.01,
                    market="linear")
        bybit.route("POST", "/v5/order/create", {}, json.dumps({
            "category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.01",
            "triggerPrice": "58000", "triggerDirection": 2, "reduceOnly": True, "orderLinkId": "tp-short"}))
        bybit.move_price("BTCUSDT", 59000.0)
        assert bybit.orders["tp-short"].status == "new", "direction 2 fires only as the price falls to it"
        bybit.move_price("BTCUSDT", 57900.0)
        assert bybit.orders["tp-short"].status == "filled" and bybit.position("BTCUSDT") == pytest.approx(0.0)
    finally:
        binance.stop()
        bybit.stop()


def test_the_mexc_fake_fires_trigger_orders_by_trigger_type_and_drops_them_after_their_cycle() -> None:
    from tests.support.fake_mexc import FakeMexc

    mexc = FakeMexc().start()
    try:
        mexc.place(client_id="long", symbol="BTCUSDT", side="buy", kind="market", qty=0.02, market="linear")

        def trigger(client_id: str, trigger_type: int, price: float) -> None:
            body = {"symbol": "BTC_USDT", "vol": 100, "side": 4, "openType": 2, "triggerPrice": price,
                    "triggerType": trigger_type, "executeCycle": 2, "trend": 1, "orderType": 5,
                    "externalOid": client_id}
            assert mexc.route("POST", "/api/v1/private/planorder/place", {}, json.dumps(body)).status == 200

        trigger("sl", 2, 59000.0)  # a sell as the price falls to it
        trigger("tp", 1, 61000.0)  # a sell as the price rises to it
        mexc.orders["tp"].expires = 1  # its cycle is over
        mexc.move_price("BTCUSDT", 61500.0)
        assert (mexc.orders["tp"].status, mexc.orders["sl"].status) == ("canceled", "new")
        mexc.move_price("BTCUSDT", 58000.0)
        assert mexc.orders["sl"].status == "filled" and mexc.position("BTCUSDT") == pytest.approx(0.01)
        executed = {"symbol": "BTC_USDT", "states": "3"}
        listed = mexc.route("GET", "/api/v1/private/planorder/list/orders", executed, "").payload["data"]
        assert [p["externalOid"] for p in listed] == ["sl"] and listed[0]["orderId"] != "0"
    finally:
        mexc.stop()
