"""What the venue adapter asks of an exchange: one interface, for the paper
venue and for every exchange reached through ccxt.

`PaperExchange` (`venues.paper`) and `CcxtVenue` (`venues.ccxt_venue`:
Bybit, Binance, MEXC) implement it; the venue adapter (`actors.venue`) uses
nothing else and never asks which one it has — what differs between
exchanges is a capability named here (`amends`, `holds_stops`,
`algo_stops`, `cancel_after`, the pacing figures). `open_exchange` builds
the one a venue's configuration names.

Quantities and prices are exact (`Decimal`) and in base units; orders are
named by the engine's client order id; order and trade answers are ccxt's
unified dicts (`id`, `clientOrderId`, `status` open|closed|canceled|
expired|rejected, `amount`, `filled`, `remaining`, `price`; a trade's `id`,
`order`, `clientOrderId`, `side`, `amount`, `price`, `fee.cost`,
`takerOrMaker`, `timestamp`). An order answer may carry `trades`, its fills
so far as `my_trades` gives them: the adapter applies them with the answer
(one write instead of two); they come again on the stream or a poll, and a
trade is applied once.

Every coroutine raises a `venues.errors.VenueError` when the call fails:
`VenueRejected` (the exchange refused: the order's fault),
`DuplicateClientOrderId` (placed before), `VenueUnreachable` (the request
never reached it: nothing placed), `VenueUnknownOutcome` (no answer: look
it up before anything is sent again).

Threads: the coroutines run on the worker's asyncio loop, the plain methods
(`market_data`, `status`, `book`, `simulate`) in the adapter's handlers,
which may run on thespian's thread meanwhile. An implementation whose state
both touch guards it itself (the paper venue holds a lock of its own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from titan_actors.domain.orders import Fill

__all__ = ["Exchange", "OrderUpdate", "open_exchange", "order_status"]

_STATUSES = {
    "open": "ACCEPTED",
    "closed": "FILLED",
    "canceled": "CANCELED",
    "cancelled": "CANCELED",
    "rejected": "REJECTED",
    "expired": "EXPIRED",
}


def order_status(order: dict[str, Any]) -> str:
    """A ccxt order's status as ours (`SUBMITTED` if the venue did not say)."""
    status = _STATUSES.get(order.get("status") or "", "SUBMITTED")
    if status == "ACCEPTED" and (order.get("filled") or 0) > 0:
        return "PARTIALLY_FILLED"
    return status


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """What the venue says about one of the engine's orders now, with the
    fill that changed it if any."""

    client_order_id: str
    status: str
    order_id: str
    reason: str = ""
    #: Set when the venue changed the order's size (a reduce-only order clipped to the position).
    quantity: Decimal | None = None
    fill: Fill | None = None


class Exchange(Protocol):
    #: symbol → market (`instrument`: step, tick, minimums); `symbol in markets`: it is traded.
    markets: Mapping[str, Any]
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

    async def start(self) -> None:
        """Load the markets; the venue is usable once this returns."""

    def close(self) -> Awaitable[None]:
        """Let go of the venue (connections, files); nothing is called after it."""

    async def watch(self, what: str) -> dict[str, list[dict[str, Any]]]:
        """The next batch of the private stream: `what` is "orders" or "trades"; symbol → items."""

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
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One page of the account's trades on `symbol` since `since_ms`, and the pages after it."""

    async def position(self, symbol: str) -> tuple[Decimal, Decimal | None]:
        """The account's position (signed, base units) and its entry price if the venue keeps one."""

    async def balances(self) -> dict[str, Decimal]: ...

    async def arm_cancel_after(self, timeouts: dict[str, int], disarm: list[str]) -> None: ...

    def market_data(self, symbol: str, bid: Decimal, ask: Decimal, last: Decimal) -> None:
        """The market data the engine receives (a simulated venue trades on it)."""

    def status(self) -> dict[str, Any]:
        """What the venue says about itself for `titan status` (merged into the adapter's detail)."""

    def book(self) -> tuple[dict[str, Any], dict[str, Decimal]]:
        """For an audit: every order the venue has had (client order id → figures) and
        its positions, as far as the venue can tell without a request ({} , {} otherwise)."""

    def simulate(self, action: str, **args: Any) -> str:
        """A simulated venue's test controls (`position`, `place`, `outage`); "" when done,
        else why not (a real exchange is never simulated)."""


def open_exchange(config: dict[str, Any], *, data_dir: str, retention_ms: int) -> Exchange:
    """The exchange a venue's configuration names (`exchange`: paper, bybit,
    binance, mexc). ccxt is imported only for an exchange that needs it."""
    if config.get("exchange", "paper") == "paper":
        from titan_actors.venues.paper import PaperExchange

        return PaperExchange.from_config(config, data_dir=data_dir, retention_ms=retention_ms)
    from titan_actors.venues.ccxt_venue import CcxtVenue

    return CcxtVenue.from_config(config)
