"""What a venue adapter asks of an exchange: one interface, pure typing.

`CcxtVenue` (Bybit, Binance, MEXC through ccxt) implements it, and the
exchange adapter (`actors.ccxt_adapter`) uses nothing else: no exchange's
name is compared in the actor — what differs between exchanges is a
capability named here (`amends`, `holds_stops`, `algo_stops`,
`cancel_after`, the pacing figures). Quantities and prices are exact
(`Decimal`) and in base units; orders are named by the engine's client
order id; order and trade answers are ccxt's unified dicts.

Every coroutine raises a `venues.errors.VenueError` when the call fails:
`VenueRejected` (the exchange refused: the order's fault),
`DuplicateClientOrderId` (placed before), `VenueUnknownOutcome` (no answer:
look it up before anything is sent again).

The paper venue does not implement it yet: it is driven synchronously by
the adapter's base class (`actors.venue`), inside the journal's own write
batch. Making it an `Exchange` too (issue 16, item 6) is planned in the
project's notes: its coroutines would run on the loop thread without the
actor lock, so its book must only change in a handler.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

__all__ = ["Exchange"]


class Exchange(Protocol):
    #: symbol → market (`instrument`: step, tick, minimums; `contract_size`; `unified`).
    markets: dict[str, Any]
    #: Why the private stream cannot be followed ("" when it can).
    stream_unavailable: str
    #: A stop can be held by the exchange only in its algo service (Binance futures).
    algo_stops: bool
    #: An order's quantity can be changed in place.
    amends: bool
    #: A bracket stop is held by the exchange unless `[venues.X] stops` says otherwise.
    holds_stops: bool
    #: "countdown", "disconnect" or "": the exchange's own cancel-all-after.
    cancel_after: str
    published_limit_per_s: float
    default_rate_per_s: float

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def watch(self, what: str) -> dict[str, list[dict[str, Any]]]: ...

    async def create(self, *, client_order_id: str, symbol: str, side: str, quantity: Decimal,
                     order_type: str, price: Decimal | None = None, time_in_force: str = "GTC",
                     reduce_only: bool = False, trigger_price: Decimal | None = None) -> dict[str, Any]: ...

    async def resize(self, *, client_order_id: str, symbol: str, side: str, quantity: Decimal,
                     order_type: str, price: Decimal | None,
                     trigger_price: Decimal | None) -> dict[str, Any]: ...

    async def cancel(self, *, client_order_id: str, symbol: str,
                     conditional: bool = False) -> dict[str, Any]: ...

    async def fetch_by_client_id(self, *, client_order_id: str, symbol: str,
                                 conditional: bool = False) -> dict[str, Any] | None: ...

    async def open_orders(self, symbol: str) -> list[dict[str, Any]]: ...

    async def my_trades(self, symbol: str, since_ms: int, page: dict[str, Any] | None = None
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...

    async def position(self, symbol: str) -> tuple[Decimal, Decimal | None]: ...

    async def balances(self) -> dict[str, Decimal]: ...

    async def arm_cancel_after(self, timeouts: dict[str, int], disarm: list[str]) -> None: ...
