"""Every exchange's order flags, through ccxt to each fake, as the venue sees
them: post-only, reduce-only, IOC, FOK and our client order id."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.test_venues import CASES
from tests.support.fake_exchange import FakeExchange
from titan_actors.venues.ccxt_venue import CcxtVenue

FLAGS = [
    (
        "po",
        {"order_type": "limit", "price": Decimal("50000.0"), "time_in_force": "PO"},
        {"tif": "PO", "status": "new"},
    ),
    (
        "ioc",
        {"order_type": "limit", "price": Decimal("50000.0"), "time_in_force": "IOC"},
        {"tif": "IOC", "status": "canceled"},
    ),
    (
        "fok",
        {"order_type": "limit", "price": Decimal("70000.0"), "time_in_force": "FOK"},
        {"tif": "FOK", "status": "filled"},
    ),
    ("gtc", {"order_type": "limit", "price": Decimal("50000.0")}, {"tif": "GTC", "status": "new"}),
]


def _against(case: str, body: Any, *, latency_s: float = 0.0) -> tuple[Any, FakeExchange]:
    """`body(venue)` on a started CcxtVenue against a fresh fake of `case`."""
    make, exchange, market = CASES[case]
    fake = make().start()
    fake.latency_s = latency_s

    async def main() -> Any:
        venue = CcxtVenue(
            exchange=exchange,
            market=market,
            api_key="test-key",
            api_secret="test-secret",
            base_url=fake.url,
            symbols=["BTCUSDT"],
        )
        await venue.start()
        try:
            return await body(venue)
        finally:
            await venue.close()

    try:
        return asyncio.run(main()), fake
    finally:
        fake.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_post_only_ioc_fok_and_reduce_only_reach_the_venue_as_its_own_flags(case: str) -> None:
    linear = CASES[case][2] == "linear"

    async def body(venue: CcxtVenue) -> None:
        for name, spec, _want in FLAGS:
            await venue.create(
                client_order_id=f"f-{name}", symbol="BTCUSDT", side="buy", quantity=Decimal("0.01"), **spec
            )
        if linear:
            await venue.create(
                client_order_id="f-ro",
                symbol="BTCUSDT",
                side="sell",
                quantity=Decimal("0.01"),
                order_type="market",
                reduce_only=True,
            )

    _, fake = _against(case, body)
    for name, _spec, want in FLAGS:
        order = fake.orders[f"f-{name}"]
        assert (order.tif, order.status) == (want["tif"], want["status"]), name
        assert order.price == (70000.0 if name == "fok" else 50000.0)
    if linear:
        assert fake.orders["f-ro"].reduce_only is True
    assert fake.bad_signatures == 0


def test_the_fake_can_be_made_slow() -> None:
    async def body(venue: CcxtVenue) -> float:
        started = time.monotonic()
        await venue.open_orders("BTCUSDT")
        return time.monotonic() - started

    took, _ = _against("bybit-linear", body, latency_s=0.3)
    assert took >= 0.3
