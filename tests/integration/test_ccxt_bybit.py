"""The ccxt venue client against a local fake of Bybit v5, over real HTTP with
signatures verified (ccxt itself is neither patched nor mocked)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.support.fake_bybit import FakeBybit
from titan_actors.venues.ccxt_venue import (
    CcxtVenue,
    DuplicateClientOrderId,
    VenueRejected,
    VenueUnknownOutcome,
)


@pytest.fixture
def fake() -> Iterator[FakeBybit]:
    server = FakeBybit().start()
    try:
        yield server
    finally:
        server.stop()


def _run(fake: FakeBybit, body, secret: str = "test-secret", timeout_ms: int = 3000):
    async def main():
        venue = CcxtVenue(exchange="bybit", market="linear", api_key="test-key", api_secret=secret,
                          base_url=fake.url, symbols=["BTCUSDT", "ETHUSDT"], timeout_ms=timeout_ms)
        await venue.start()
        try:
            return await body(venue)
        finally:
            await venue.close()

    return asyncio.run(main())


def test_markets_map_exchange_symbols_with_their_precision_and_minimums(fake: FakeBybit) -> None:
    markets = _run(fake, lambda v: asyncio.sleep(0, v.markets))
    assert markets["BTCUSDT"].unified == "BTC/USDT:USDT"
    btc = markets["BTCUSDT"]
    assert (btc.instrument.min_qty, btc.instrument.qty_step, btc.instrument.tick) == (
        Decimal("0.001"), Decimal("0.001"), Decimal("0.1"))
    assert markets["ETHUSDT"].instrument.min_qty == Decimal("0.01")


def test_create_fetch_cancel_carry_our_client_order_id_and_every_private_call_is_signed(
    fake: FakeBybit,
) -> None:
    async def body(v: CcxtVenue):
        await v.create(client_order_id="tt-a", symbol="BTCUSDT", side="buy", quantity=Decimal("0.01"),
                       order_type="market")
        await v.create(client_order_id="tt-b", symbol="BTCUSDT", side="sell", quantity=Decimal("0.02"),
                       order_type="limit", price=Decimal("70000.0"), time_in_force="GTC")
        filled = await v.fetch_by_client_id(client_order_id="tt-a", symbol="BTCUSDT")
        resting = [o["clientOrderId"] for o in await v.open_orders("BTCUSDT")]
        await v.cancel(client_order_id="tt-b", symbol="BTCUSDT")
        canceled = await v.fetch_by_client_id(client_order_id="tt-b", symbol="BTCUSDT")
        return filled, resting, canceled, (await v.position("BTCUSDT"))[0], await v.fetch_by_client_id(
            client_order_id="never", symbol="BTCUSDT")

    filled, resting, canceled, positions, missing = _run(fake, body)
    assert (filled["clientOrderId"], filled["status"]) == ("tt-a", "closed")
    assert filled["filled"] == Decimal("0.01")
    assert resting == ["tt-b"]
    assert canceled["status"] == "canceled"
    assert positions == Decimal("0.01")
    assert missing is None
    assert fake.orders["tt-a"].client_id == "tt-a", "the venue's own field holds our id"
    private = [r for r in fake.requests if r[1].startswith(("/v5/order", "/v5/position"))]
    assert private and all(signed for _m, _p, signed in private)
    assert fake.bad_signatures == 0


def test_a_wrong_secret_is_refused_by_the_venues_signature_check(fake: FakeBybit) -> None:
    async def body(v: CcxtVenue):
        await v.create(client_order_id="tt-x", symbol="BTCUSDT", side="buy", quantity=Decimal("0.01"),
                       order_type="market")

    with pytest.raises(VenueRejected, match="AuthenticationError"):
        _run(fake, body, secret="not-the-secret")
    assert fake.bad_signatures >= 1 and "tt-x" not in fake.orders


def test_a_repeated_client_order_id_is_recognised_as_already_placed(fake: FakeBybit) -> None:
    async def body(v: CcxtVenue):
        await v.create(client_order_id="tt-d", symbol="BTCUSDT", side="buy", quantity=Decimal("0.01"),
                       order_type="market")
        await v.create(client_order_id="tt-d", symbol="BTCUSDT", side="buy", quantity=Decimal("0.01"),
                       order_type="market")

    with pytest.raises(DuplicateClientOrderId):
        _run(fake, body)
    assert len(fake.orders) == 1


@pytest.mark.parametrize("fault", ["5xx", "ratelimit", "timeout", "lost"])
def test_a_failed_call_is_an_unknown_outcome_and_the_lookup_tells_whether_it_was_placed(
    fake: FakeBybit, fault: str
) -> None:
    fake.fail_next(fault)

    async def body(v: CcxtVenue):
        with pytest.raises(VenueUnknownOutcome):
            await v.create(client_order_id="tt-u", symbol="BTCUSDT", side="buy", quantity=Decimal("0.01"),
                           order_type="market")
        found = await v.fetch_by_client_id(client_order_id="tt-u", symbol="BTCUSDT")
        if found is None:  # not placed: a resend is safe
            await v.create(client_order_id="tt-u", symbol="BTCUSDT", side="buy", quantity=Decimal("0.01"),
                           order_type="market")
        return found

    found = _run(fake, body, timeout_ms=1000)
    placed_by_the_failed_call = fault in ("timeout", "lost")
    assert (found is not None) == placed_by_the_failed_call
    assert list(fake.orders) == ["tt-u"], "exactly one order in the end"
