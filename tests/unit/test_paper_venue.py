from __future__ import annotations

from decimal import Decimal as D

import pytest

from titan_actors.domain.money import to_decimal, to_decimal_or_none
from titan_actors.venues.errors import DuplicateClientOrderId, VenueRejected
from titan_actors.venues.paper import PaperSettings, PaperVenue


def _venue(**settings) -> PaperVenue:
    base = {"reference_prices": {"BTCUSDT": D(100)}, "taker_fee_bps": D(10), "maker_fee_bps": D(5)}
    exact = {k: v if k == "latency_ms" else to_decimal(v) for k, v in settings.items()}
    return PaperVenue(PaperSettings(**{**base, **exact}))


def _spec(coid: str, side: str = "buy", qty: float = 1.0, order_type: str = "market",
          price: float | None = None, tif: str = "GTC", reduce_only: bool = False,
          trigger: float | None = None) -> dict:
    return {"client_order_id": coid, "symbol": "BTCUSDT", "side": side, "quantity": to_decimal(qty),
            "order_type": order_type, "price": to_decimal_or_none(price),
            "trigger_price": to_decimal_or_none(trigger), "time_in_force": tif, "reduce_only": reduce_only}


def _quote(venue: PaperVenue, bid: float, ask: float, last: float, ts: int) -> list:
    return venue.on_quote("BTCUSDT", to_decimal(bid), to_decimal(ask), to_decimal(last), ts)


def test_a_market_order_fills_at_the_quote_with_slippage_and_a_taker_fee() -> None:
    venue = _venue(slippage_bps=10.0)
    events = venue.submit(_spec("a", "buy", 2.0), 1)
    assert [e.order.status for e in events] == ["ACCEPTED", "FILLED"]
    fill = events[-1].fill
    assert fill.price == D("100.1")
    assert fill.qty == 2 and fill.liquidity == "taker"
    assert fill.fee == D("0.2002")  # 2 * 100.1 * 10 bps, exactly
    assert venue.position("BTCUSDT") == 2
    assert venue.balance == D("99999.7998")


def test_a_market_order_waits_for_the_latency() -> None:
    venue = _venue(latency_ms=50)
    events = venue.submit(_spec("a"), 1000)
    assert [e.order.status for e in events] == ["ACCEPTED"]
    assert venue.run_due(1049) == []
    assert venue.next_due() == 1050
    assert [e.order.status for e in venue.run_due(1050)] == ["FILLED"]


def test_a_resting_limit_fills_as_maker_in_parts_when_the_price_crosses() -> None:
    venue = _venue(liquidity=0.4)
    events = venue.submit(_spec("a", "buy", 1.0, "limit", 95.0), 1)
    assert [e.order.status for e in events] == ["ACCEPTED"]
    assert _quote(venue, 96.0, 96.5, 96.2, 2) == []
    first = _quote(venue, 94.0, 94.5, 94.2, 3)
    assert [(e.order.status, e.fill.qty, e.fill.price, e.fill.liquidity) for e in first] == [
        ("PARTIALLY_FILLED", D("0.4"), 95, "maker")]
    _quote(venue, 94.0, 94.5, 94.2, 4)
    last = _quote(venue, 94.0, 94.5, 94.2, 5)
    assert last[-1].order.status == "FILLED"
    assert last[-1].fill.qty == D("0.2")
    assert venue.find("a").filled_qty == 1
    assert venue.open == {}


def test_a_crossing_limit_takes_at_the_quote_never_worse_than_its_price() -> None:
    venue = _venue()
    events = venue.submit(_spec("a", "buy", 1.0, "limit", 105.0), 1)
    assert events[-1].fill.price == 100.0 and events[-1].fill.liquidity == "taker"


def test_post_only_that_would_cross_is_rejected_and_one_that_rests_is_accepted() -> None:
    venue = _venue()
    with pytest.raises(VenueRejected, match="post-only"):
        venue.submit(_spec("a", "buy", 1.0, "limit", 101.0, "PO"), 1)
    assert [e.order.status for e in venue.submit(_spec("b", "buy", 1.0, "limit", 99.0, "PO"), 1)] == [
        "ACCEPTED"]


def test_ioc_fills_what_it_can_and_expires_the_rest() -> None:
    venue = _venue(liquidity=0.3)
    events = venue.submit(_spec("a", "buy", 1.0, "limit", 101.0, "IOC"), 1)
    assert [e.order.status for e in events] == ["ACCEPTED", "PARTIALLY_FILLED", "EXPIRED"]
    assert events[-1].order.filled_qty == D("0.3")
    missed = venue.submit(_spec("b", "buy", 1.0, "limit", 90.0, "IOC"), 1)
    assert [e.order.status for e in missed] == ["ACCEPTED", "EXPIRED"]


def test_fok_fills_in_full_or_not_at_all() -> None:
    short = _venue(liquidity=0.5)
    events = short.submit(_spec("a", "buy", 1.0, "limit", 101.0, "FOK"), 1)
    assert [e.order.status for e in events] == ["ACCEPTED", "EXPIRED"]
    assert short.position("BTCUSDT") == 0.0
    deep = _venue()
    assert deep.submit(_spec("a", "buy", 1.0, "limit", 101.0, "FOK"), 1)[-1].order.status == "FILLED"


def test_reduce_only_is_refused_without_a_position_and_clipped_to_it() -> None:
    venue = _venue()
    with pytest.raises(VenueRejected, match="reduce-only"):
        venue.submit(_spec("a", "sell", 1.0, reduce_only=True), 1)
    venue.submit(_spec("b", "buy", 1.0), 2)
    with pytest.raises(VenueRejected, match="reduce-only"):
        venue.submit(_spec("c", "buy", 1.0, reduce_only=True), 3)
    events = venue.submit(_spec("d", "sell", 5.0, reduce_only=True), 4)
    assert events[-1].order.status == "FILLED" and events[-1].order.quantity == 1.0
    assert venue.position("BTCUSDT") == 0.0


def test_a_position_that_flips_realises_pnl_on_the_closed_part_and_opens_the_rest_at_the_fill_price() -> None:
    venue = _venue(taker_fee_bps=0.0)
    venue.submit(_spec("a", "buy", 1.0), 1)
    _quote(venue, 110.0, 110.0, 110.0, 2)
    venue.submit(_spec("b", "sell", 3.0), 3)
    assert venue.positions["BTCUSDT"] == (-2, 110)
    assert venue.balance == 100_010


def test_a_stop_triggers_when_the_last_price_reaches_it() -> None:
    venue = _venue()
    venue.submit(_spec("a", "buy", 1.0), 1)
    events = venue.submit(_spec("sl", "sell", 1.0, "stop", tif="GTC", reduce_only=True, trigger=95.0), 2)
    assert [e.order.status for e in events] == ["ACCEPTED"]
    assert _quote(venue, 96.0, 96.1, 96.0, 3) == []
    hit = _quote(venue, 94.9, 95.0, 94.9, 4)
    assert hit[-1].order.status == "FILLED" and hit[-1].fill.price == D("94.9")
    assert venue.position("BTCUSDT") == 0.0


def test_a_repeated_client_order_id_is_refused_with_the_existing_order() -> None:
    venue = _venue()
    venue.submit(_spec("a"), 1)
    with pytest.raises(DuplicateClientOrderId) as info:
        venue.submit(_spec("a"), 2)
    assert info.value.order.status == "FILLED"


def test_cancel_closes_an_open_order_and_refuses_a_closed_one() -> None:
    venue = _venue()
    venue.submit(_spec("a", "buy", 1.0, "limit", 90.0), 1)
    assert venue.cancel("a", 2)[0].order.status == "CANCELED"
    with pytest.raises(VenueRejected, match="already closed"):
        venue.cancel("a", 3)
    with pytest.raises(VenueRejected, match="unknown"):
        venue.cancel("zz", 3)


def test_the_state_survives_a_restore_from_its_writes() -> None:
    venue = _venue()
    venue.submit(_spec("a", "buy", 2.0), 1)
    venue.submit(_spec("b", "sell", 1.0, "limit", 120.0), 2)
    store = {}
    for key, value in venue.drain_writes():
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
    again = _venue()
    again.restore(store[b"paper:account"], [v for k, v in store.items() if k.startswith(b"paper:open:")])
    assert again.position("BTCUSDT") == 2.0
    assert set(again.open) == {"b"}
    assert again.seq == venue.seq and again.balance == venue.balance
