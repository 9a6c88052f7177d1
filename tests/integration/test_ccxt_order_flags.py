"""Every exchange's order flags, through ccxt to each fake, as the venue sees
them: post-only, reduce-only, IOC, FOK and our client order id."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.test_venues import CASES
from titan_actors.venues.ccxt_venue import CcxtVenue

FLAGS = [
    ("po", {"order_type": "limit", "price": 50000.0, "time_in_force": "PO"}, {"tif": "PO", "status": "new"}),
    (
        "ioc",
        {"order_type": "limit", "price": 50000.0, "time_in_force": "IOC"},
        {"tif": "IOC", "status": "canceled"},
    ),
    (
        "fok",
        {"order_type": "limit", "price": 70000.0, "time_in_force": "FOK"},
        {"tif": "FOK", "status": "filled"},
    ),
    ("gtc", {"order_type": "limit", "price": 50000.0}, {"tif": "GTC", "status": "new"}),
]


@pytest.mark.parametrize("case", list(CASES))
def test_post_only_ioc_fok_and_reduce_only_reach_the_venue_as_its_own_flags(case: str) -> None:
    make, exchange, market = CASES[case]
    fake = make().start()

    async def main() -> None:
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
            for name, spec, _want in FLAGS:
                await venue.create(
                    client_order_id=f"f-{name}", symbol="BTCUSDT", side="buy", quantity=0.01, **spec
                )
            if market == "linear":
                await venue.create(
                    client_order_id="f-ro",
                    symbol="BTCUSDT",
                    side="sell",
                    quantity=0.01,
                    order_type="market",
                    reduce_only=True,
                )
        finally:
            await venue.close()

    try:
        asyncio.run(main())
        for name, _spec, want in FLAGS:
            order = fake.orders[f"f-{name}"]
            assert (order.tif, order.status) == (want["tif"], want["status"]), name
            assert order.price == (70000.0 if name == "fok" else 50000.0)
        if market == "linear":
            assert fake.orders["f-ro"].reduce_only is True
        assert fake.bad_signatures == 0
    finally:
        fake.stop()


def test_the_fake_can_be_made_slow() -> None:
    make, exchange, market = CASES["bybit-linear"]
    fake = make().start()
    fake.latency_s = 0.3

    async def main() -> float:
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
            started = time.monotonic()
            await venue.open_orders("BTCUSDT")
            return time.monotonic() - started
        finally:
            await venue.close()

    try:
        assert asyncio.run(main()) >= 0.3
    finally:
        fake.stop()
