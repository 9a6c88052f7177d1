"""Exchanges through ccxt (async): Bybit, Binance, MEXC.

One `CcxtVenue` per configured venue. `start()` loads only the configured
market type (`linear` → the exchange's USDT perpetuals, `spot`) and builds
the symbol map (`BTCUSDT` ⇄ `BTC/USDT:USDT`) with each market's precision
and minimums. Orders carry our `client_order_id` in the venue's own field
(ccxt's unified `clientOrderId` param: Bybit `orderLinkId`, Binance
`newClientOrderId`, MEXC `clientOrderId`), so an order can always be found
again by it.

`base_url` replaces the exchange's API host (a testnet, a proxy, a fake);
`testnet` uses ccxt's sandbox URLs.

Our trades come a page at a time (`my_trades`); a full page names the pages
still to fetch, in each venue's own way, so no fill is left unseen behind a
page boundary however many arrived between two polls.

Failure, as the engine's journal needs it (`classify`):

- `DuplicateClientOrderId`: the venue already has an order with that client
  order id (Bybit 110072, Binance -4116): it was placed — look it up;
- `VenueUnknownOutcome`: timeouts, 5xx, rate limits, lost connections (the
  ccxt `NetworkError` family): the order may or may not be placed — look it
  up by client order id before any resend;
- `VenueRejected`: everything else the venue refused (`InvalidOrder`,
  `InsufficientFunds`, `AuthenticationError`, ...), with its message.

Each exchange's parameters are verified against a local fake of its REST
API (tests/support/fake_*.py), signatures included.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from titan_actors.domain.money import ZERO, Instrument, to_decimal
from titan_actors.venues.errors import DuplicateClientOrderId, VenueError, VenueRejected, VenueUnknownOutcome
from titan_actors.venues.exchange import order_status
from titan_actors.venues.pacing import PUBLISHED_LIMITS, default_rate

__all__ = [
    "TRADES_PAGE",
    "CcxtVenue",
    "DuplicateClientOrderId",
    "MarketInfo",
    "VenueError",
    "VenueRejected",
    "VenueUnknownOutcome",
    "classify",
    "order_status",
    "replace_host",
]

log = logging.getLogger(__name__)

EXCHANGES = ("bybit", "binance", "mexc")
#: The venue's own parameter that names an order by our client order id, for
#: cancel and look-up (ccxt maps `clientOrderId` only when creating).
_CLIENT_ID_PARAM = {"bybit": "orderLinkId", "binance": "origClientOrderId", "mexc": "clientOrderId"}
_DUPLICATE_MARKERS = ("110072", "-4116", "duplicate")
#: "No such order" answers ccxt does not map to OrderNotFound (MEXC spot -2013, swap 2040).
_NOT_FOUND_MARKERS = ("-2013", "order not exist", "order does not exist")


def replace_host(urls: Any, base_url: str) -> Any:
    """ccxt's API URLs (a string, or tables of them) with scheme and host
    replaced by `base_url`'s; each keeps its path (Binance `/fapi/v1`, ...)."""
    if isinstance(urls, dict):
        return {k: replace_host(v, base_url) for k, v in urls.items()}
    if not isinstance(urls, str):
        return urls
    return base_url.rstrip("/") + urlsplit(urls).path


def classify(exc: BaseException) -> VenueError:
    """Only errors that surely mean "not placed" are rejections; anything else
    (network errors, 5xx, a generic exchange error) is an unknown outcome, to be
    looked up — never reported as refused while the order may exist."""
    import ccxt

    text = f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, ccxt.DuplicateOrderId) or (
        isinstance(exc, ccxt.ExchangeError) and any(m in text.lower() for m in _DUPLICATE_MARKERS)
    ):
        return DuplicateClientOrderId(text)
    if isinstance(exc, ccxt.NetworkError):
        return VenueUnknownOutcome(text)
    refusals = (
        ccxt.InvalidOrder,
        ccxt.InsufficientFunds,
        ccxt.AuthenticationError,
        ccxt.PermissionDenied,
        ccxt.BadSymbol,
        ccxt.BadRequest,
        ccxt.ArgumentsRequired,
        ccxt.NotSupported,
        ccxt.AccountSuspended,
    )
    if isinstance(exc, refusals):
        return VenueRejected(text)
    return VenueUnknownOutcome(text)


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """One market, in base units (a contract market's sizes are multiplied by
    its contract size: MEXC's BTC_USDT contract is 0.0001 BTC)."""

    symbol: str  # BTCUSDT
    unified: str  # BTC/USDT:USDT
    instrument: Instrument
    contract_size: Decimal = Decimal(1)


#: Each venue's largest page of trades (the default page size).
TRADES_PAGE = {"bybit": 100, "binance": 1000, "mexc": 100}


#: (exchange, market) whose private stream ccxt speaks with what it installs.
_STREAMED = {
    ("bybit", "linear"),
    ("bybit", "spot"),
    ("binance", "linear"),
    ("binance", "spot"),
    ("mexc", "linear"),
}


def _times(value: Any, factor: Decimal) -> Decimal | None:
    return None if value is None else to_decimal(value) * factor


#: Fields of ccxt's orders and trades: sizes (in contracts on a contract
#: market) and prices, as exact Decimals once they are in.
_SIZES = ("amount", "filled", "remaining")
_PRICES = ("price", "average", "cost", "triggerPrice", "stopPrice")


class CcxtVenue:
    """One exchange account through ccxt (async). Quantities in and out are in
    base units; orders are named by our client order id. Every method raises
    a `VenueError` (see `classify`) when the call fails."""

    def __init__(
        self,
        *,
        exchange: str,
        market: str,
        api_key: str,
        api_secret: str,
        base_url: str = "",
        testnet: bool = False,
        symbols: list[str] | None = None,
        timeout_ms: int = 3000,
        trades_page: int = 0,
        ws_base_url: str = "",
    ) -> None:
        if exchange not in EXCHANGES:
            raise ValueError(f"exchange must be one of {', '.join(EXCHANGES)}")
        self.exchange_id, self.market_type = exchange, market
        self.api_key, self.api_secret = api_key, api_secret
        self.base_url, self.testnet, self.timeout_ms = base_url, testnet, timeout_ms
        self.wanted = set(symbols or [])
        maximum = TRADES_PAGE[exchange]
        self.trades_page = min(trades_page, maximum) if trades_page > 0 else maximum
        self.ws_base_url = ws_base_url
        self.client: Any = None
        self.pro: Any = None  # the ccxt.pro client of the private stream
        self.markets: dict[str, MarketInfo] = {}
        #: MEXC's swap API names orders by `externalOid` through its own endpoints.
        self.mexc_swap = exchange == "mexc" and market == "linear"
        # Binance futures hold conditional orders in their algo service: created,
        # looked up, listed and canceled there (ccxt's `trigger` parameter).
        self.algo_stops = exchange == "binance" and market == "linear"
        #: What the adapter asks of the exchange rather than of its name.
        self.amends = exchange == "bybit"  # ccxt `edit_order` changes an order in place
        self.holds_stops = exchange == "bybit"  # a bracket stop is native unless `stops` says otherwise
        self.published_limit_per_s = PUBLISHED_LIMITS.get(exchange, 10.0)
        self.default_rate_per_s = default_rate(exchange)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> CcxtVenue:
        """The exchange of a `[venues.X]` section."""
        return cls(
            exchange=cfg.get("exchange", ""),
            market=cfg.get("market", "linear"),
            api_key=cfg.get("api_key", ""),
            api_secret=cfg.get("api_secret", ""),
            base_url=cfg.get("base_url", ""),
            testnet=bool(cfg.get("testnet", False)),
            symbols=list(cfg.get("symbols", [])),
            timeout_ms=int(cfg.get("request_timeout_ms", 3000)),
            trades_page=int(cfg.get("trades_page_size", 0)),
            ws_base_url=cfg.get("ws_base_url", ""),
        )

    # --- what the adapter tells or asks without a request ------------------------------

    def market_data(self, symbol: str, bid: Decimal, ask: Decimal, last: Decimal) -> None:
        """The exchange has its own market: nothing to do."""

    def status(self) -> dict[str, Any]:
        return {"markets": sorted(self.markets)}

    def book(self) -> tuple[dict[str, Any], dict[str, Decimal]]:
        return {}, {}  # only requests can tell: reconciliation asks them

    def simulate(self, action: str, **_args: Any) -> str:
        return f"{self.exchange_id} is a real exchange: it cannot simulate {action!r}"

    async def start(self) -> None:
        import ccxt.async_support as ccxt_async

        await self.close()  # a retried start: the previous client's sessions
        kind = "swap" if self.market_type == "linear" else "spot"
        self.options: dict[str, Any] = {
            "defaultType": kind,
            "fetchMarkets": {"types": [self.market_type]},
            "fetchMargins": False,  # Binance: no margin-pair calls at start
            "createMarketBuyOrderRequiresPrice": False,
        }  # spot: quantity in base units
        if self.exchange_id == "mexc":
            self.options["fetchMarkets"] = {"types": [kind]}
        client = self._client(ccxt_async)
        self.client = client
        markets = await client.load_markets()
        for unified, market in markets.items():
            symbol = f"{market.get('base')}{market.get('quote')}"  # BTC_USDT, BTCUSDT → BTCUSDT
            if (market.get("linear") if self.market_type == "linear" else market.get("spot")) and (
                not self.wanted or symbol in self.wanted
            ):
                limits, precision = market.get("limits", {}), market.get("precision", {})
                size = to_decimal(market.get("contractSize") or 1)
                instrument = Instrument(
                    symbol,
                    qty_step=_times(precision.get("amount"), size),
                    tick=_exact(precision.get("price")),
                    min_qty=_times((limits.get("amount") or {}).get("min"), size),
                    min_notional=_exact((limits.get("cost") or {}).get("min")),
                )
                self.markets[symbol] = MarketInfo(symbol, unified, instrument, size)

    def _client(self, module: Any) -> Any:
        """A ccxt client of `module` (ccxt.async_support or ccxt.pro) for this account."""
        client = getattr(module, self.exchange_id)(
            {
                "apiKey": self.api_key,
                "secret": self.api_secret,
                "enableRateLimit": False,
                "timeout": self.timeout_ms,
                "options": dict(self.options),
            }
        )
        client.has["fetchCurrencies"] = False  # one call at start: the markets we trade
        if self.testnet:
            client.set_sandbox_mode(True)
        api = client.urls["api"]
        if self.base_url:
            client.urls["api"] = replace_host(api, self.base_url)
        if "ws" in api:  # REST hosts and stream hosts differ at every exchange
            ws = api["ws"]
            client.urls["api"]["ws"] = replace_host(ws, self.ws_base_url) if self.ws_base_url else ws
        return client

    async def close(self) -> None:
        for name in ("pro", "client"):
            client = getattr(self, name)
            if client is not None:
                setattr(self, name, None)
                await client.close()

    # --- the private stream ---------------------------------------------------------------

    @property
    def stream_unavailable(self) -> str:
        """Why this venue's private stream is not followed ("" when it is)."""
        if (self.exchange_id, self.market_type) not in _STREAMED:
            # MEXC spot's stream is protobuf: ccxt needs the `protobuf` package for it.
            return f"ccxt cannot stream {self.exchange_id} {self.market_type} without extra packages"
        if self.base_url and not self.ws_base_url:
            return "base_url is set and ws_base_url is not: where the stream is served is unknown"
        return ""

    def _stream_client(self) -> Any:
        if self.pro is None:
            import ccxt.pro

            self.pro = self._client(ccxt.pro)
            self.pro.set_markets(self.client.markets, self.client.currencies)
        return self.pro

    async def watch(self, what: str) -> dict[str, list[dict[str, Any]]]:
        """The stream's next batch of our "trades" or "orders", by engine
        symbol, in base units (ccxt hands over what arrived since the last call)."""
        method = {"trades": "watch_my_trades", "orders": "watch_orders"}[what]
        try:
            items = await getattr(self._stream_client(), method)()
        except Exception as exc:
            raise classify(exc) from exc
        return self._by_symbol(items)

    def _by_symbol(self, items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        symbols = {m.unified: m.symbol for m in self.markets.values()}
        out: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            symbol = symbols.get(item.get("symbol") or "")
            if symbol is not None:  # not a market we trade here
                out.setdefault(symbol, []).append(self._in_base(symbol, item))
        return out

    def unified(self, symbol: str) -> str:
        return self.markets[symbol].unified

    def _in_base(self, symbol: str, order: dict[str, Any]) -> dict[str, Any]:
        """A ccxt order or trade with its sizes in base units and its sizes and
        prices as exact Decimals, and its client order id where ccxt leaves it
        in the venue's own field. A field that is not a number (bad venue data)
        becomes None: the adapter reports what it cannot use."""
        size = self.markets[symbol].contract_size
        out = dict(order)
        # The fills some exchanges embed in an order answer are not in base
        # units nor always complete: the adapter learns fills from trades only.
        out.pop("trades", None)
        for key in (*_SIZES, *_PRICES):
            if out.get(key) is not None:
                value = _exact(out[key])
                out[key] = value * size if value is not None and key in _SIZES else value
        fee = out.get("fee")
        if isinstance(fee, dict) and fee.get("cost") is not None:
            out["fee"] = {**fee, "cost": _exact(fee["cost"])}
        if self.mexc_swap and not out.get("clientOrderId"):
            out = {**out, "clientOrderId": (out.get("info") or {}).get("externalOid")}
        raw = out.get("info")
        if isinstance(raw, dict) and raw.get("rejectReason") == "EC_NoError":  # Bybit's "no error"
            out["info"] = {**raw, "rejectReason": ""}
        actual = str((out.get("info") or {}).get("actualOrderId") or "")
        if self.algo_stops and actual:
            out["id"] = actual  # a fired algo order trades as this order of the matching engine
        return out

    async def create(
        self,
        *,
        client_order_id: str,
        symbol: str,
        side: str,
        quantity: Decimal,
        order_type: str,
        price: Decimal | None = None,
        time_in_force: str = "GTC",
        reduce_only: bool = False,
        trigger_price: Decimal | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        kind: Any = order_type
        if order_type == "stop":  # a bracket stop-loss: a market order the venue triggers
            kind, params["triggerPrice"] = "market", _ccxt_number(trigger_price)
            if self.exchange_id == "bybit" and self.market_type != "spot":
                # Bybit contracts need the side of the market the trigger is on: a
                # sell stop fires as the price falls to it, a buy stop as it rises.
                params["triggerDirection"] = "descending" if side == "sell" else "ascending"
        if reduce_only:
            params["reduceOnly"] = True
        if time_in_force == "PO":
            params["postOnly"] = True
        elif time_in_force in ("IOC", "FOK") and self.mexc_swap:
            kind = 3 if time_in_force == "IOC" else 4  # MEXC swap: IOC and FOK are order types
        elif time_in_force in ("IOC", "FOK"):
            params["timeInForce"] = time_in_force
        amount = _ccxt_number(quantity / self.markets[symbol].contract_size)
        limit = _ccxt_number(price) if order_type == "limit" else None
        try:
            order = await self.client.create_order(self.unified(symbol), kind, side, amount, limit, params)
        except Exception as exc:
            raise classify(exc) from exc
        return self._in_base(symbol, order)

    def _by_client_id(self, client_order_id: str) -> dict[str, Any]:
        return {_CLIENT_ID_PARAM[self.exchange_id]: client_order_id}

    def _market_id(self, symbol: str) -> str:
        return self.client.market(self.unified(symbol))["id"]

    async def resize(self, *, client_order_id: str, symbol: str, side: str, quantity: Decimal,
                     order_type: str, price: Decimal | None, trigger_price: Decimal | None) -> dict[str, Any]:
        """An order's quantity changed in place (Bybit's amend; `edit_order`):
        a stop keeps its trigger, a limit order its price."""
        amount = _ccxt_number(quantity / self.markets[symbol].contract_size)
        params: dict[str, Any] = {"orderLinkId": client_order_id}
        if trigger_price is not None:
            params["triggerPrice"] = _ccxt_number(trigger_price)
        kind = "limit" if order_type == "limit" else "market"
        limit = _ccxt_number(price) if kind == "limit" and price is not None else None
        try:
            return await self.client.edit_order(None, self.unified(symbol), kind, side, amount, limit, params)
        except Exception as exc:
            raise classify(exc) from exc

    def _by_client_id_of(self, client_order_id: str, conditional: bool) -> dict[str, Any]:
        if conditional and self.algo_stops:
            return {"clientOrderId": client_order_id, "trigger": True}
        return self._by_client_id(client_order_id)

    async def cancel(self, *, client_order_id: str, symbol: str, conditional: bool = False) -> dict[str, Any]:
        """`conditional`: a stop the venue holds (Binance: in its algo service)."""
        try:
            if self.mexc_swap:
                await self.client.contractPrivatePostOrderCancelWithExternal(
                    {"symbol": self._market_id(symbol), "externalOid": client_order_id}
                )
                return {"clientOrderId": client_order_id, "status": "canceled"}
            return await self.client.cancel_order(
                None, self.unified(symbol), self._by_client_id_of(client_order_id, conditional)
            )
        except Exception as exc:
            raise classify(exc) from exc

    @property
    def cancel_after(self) -> str:
        """The exchange's own cancel-all-after this client keeps armed for a
        dead man's switch: "countdown" (Binance futures: per symbol, refreshed),
        "disconnect" (Bybit: when the private stream is gone for the window),
        or "" (none)."""
        if self.exchange_id == "binance" and self.market_type != "spot":
            return "countdown"
        return "disconnect" if self.exchange_id == "bybit" else ""

    async def arm_cancel_after(self, timeouts: dict[str, int], disarm: list[str]) -> None:
        """Arm (or refresh) the exchange's cancel-all-after: every order of a
        symbol in `timeouts` (symbol → ms) is canceled by the exchange if it
        hears nothing more in that time; `disarm` stops it for those symbols."""
        try:
            if self.cancel_after == "countdown":
                for symbol, ms in [*timeouts.items(), *((s, 0) for s in disarm)]:
                    await self.client.fapiPrivatePostCountdownCancelAll(
                        {"symbol": self._market_id(symbol), "countdownTime": ms})
            elif self.cancel_after == "disconnect" and timeouts:
                window = min(300, max(3, math.ceil(min(timeouts.values()) / 1000)))
                product = "SPOT" if self.market_type == "spot" else "DERIVATIVES"
                await self.client.privatePostV5OrderDisconnectedCancelAll(
                    {"product": product, "timeWindow": window})
        except Exception as exc:
            raise classify(exc) from exc

    async def fetch_by_client_id(self, *, client_order_id: str, symbol: str,
                                 conditional: bool = False) -> dict[str, Any] | None:
        """The order with this client order id, or None if the venue says it has
        none. Bybit: looked for in the open orders, then the closed ones;
        Binance and MEXC spot: fetched by client order id (a Binance futures
        stop, `conditional`, in the algo service); MEXC swap: its
        `order/external` endpoint."""
        import ccxt

        try:
            if self.mexc_swap:
                response = await self.client.contractPrivateGetOrderExternalSymbolExternalOid(
                    {"symbol": self._market_id(symbol), "external_oid": client_order_id}
                )
                order = self.client.parse_order(response["data"], self.client.market(self.unified(symbol)))
                return self._in_base(symbol, order)
            params = self._by_client_id_of(client_order_id, conditional)
            if self.exchange_id != "bybit":
                return self._in_base(
                    symbol, await self.client.fetch_order(None, self.unified(symbol), params)
                )
            for fetch in (self.client.fetch_open_orders, self.client.fetch_closed_orders):
                for order in await fetch(self.unified(symbol), None, None, params):
                    if order.get("clientOrderId") == client_order_id:
                        return self._in_base(symbol, order)
        except ccxt.OrderNotFound:
            return None
        except Exception as exc:
            if any(m in str(exc).lower() for m in _NOT_FOUND_MARKERS):
                return None  # the venue's own "no such order" (MEXC's are not mapped by ccxt)
            raise classify(exc) from exc
        return None

    async def open_orders(self, symbol: str) -> list[dict[str, Any]]:
        """Every open order on `symbol` (Binance futures: the algo service's too)."""
        try:
            unified = self.unified(symbol)
            orders = await self.client.fetch_open_orders(unified)
            if self.algo_stops:
                orders += await self.client.fetch_open_orders(unified, None, None, {"trigger": True})
        except Exception as exc:
            raise classify(exc) from exc
        return [self._in_base(symbol, o) for o in orders]

    async def my_trades(
        self, symbol: str, since_ms: int, page: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One page of our trades on `symbol` since `since_ms`, oldest first, and
        the pages still to fetch when it was full (each a `page` for the next call)."""
        params = dict(page or {})
        since = params.pop("since", since_ms)
        limit = self.trades_page
        try:
            trades = await self.client.fetch_my_trades(self.unified(symbol), since, limit, params)
        except Exception as exc:
            raise classify(exc) from exc
        more = self._next_pages(trades, since, params) if len(trades) >= limit else []
        ordered = sorted(
            (self._in_base(symbol, t) for t in trades),
            key=lambda t: (t.get("timestamp") or 0, str(t.get("id"))),
        )
        return ordered, more

    def _next_pages(self, trades: list[dict[str, Any]], since: int | None, params: dict[str, Any]) -> list:
        """Each venue's own way to the rest of a full page: Bybit's cursor,
        Binance's trade ids, MEXC swap's page numbers. MEXC spot pages by time
        from an end it does not document, so both sides of the page are asked."""
        if self.exchange_id == "bybit":
            cursors = [(t.get("info") or {}).get("nextPageCursor") for t in trades]
            cursor = next((c for c in cursors if c), None)
            return [{"since": since, "cursor": cursor}] if cursor else []
        if self.exchange_id == "binance":
            return [{"since": None, "fromId": max(int(t["id"]) for t in trades) + 1}]
        if self.mexc_swap:
            return [{"since": since, "page_num": int(params.get("page_num", 1)) + 1}]
        stamps = [int(t.get("timestamp") or 0) for t in trades]
        oldest, newest = min(stamps), max(stamps)
        if oldest == newest:
            log.warning("%s: a page of trades in one millisecond; the rest is not seen", self.exchange_id)
            return []
        until = {"until": params["until"]} if "until" in params else {}
        return [{"since": since, "until": oldest}, {"since": newest, **until}]

    async def position(self, symbol: str) -> tuple[Decimal, Decimal | None]:
        """(signed net quantity, average entry price or None when the venue
        gives none) of `symbol`: the position for derivatives, the base coin's
        balance for spot (a wallet has no entry price)."""
        market = self.markets[symbol]
        try:
            if self.market_type == "spot":
                balance = await self.client.fetch_balance()
                base = market.unified.split("/")[0]
                return _exact((balance.get("total") or {}).get(base)) or ZERO, None
            rows = await self.client.fetch_positions([market.unified])
        except Exception as exc:
            raise classify(exc) from exc
        qty, avg = ZERO, None
        for row in rows:
            if row.get("symbol") == market.unified:
                contracts = _exact(row.get("contracts")) or ZERO
                size = contracts * (_exact(row.get("contractSize")) or Decimal(1))
                qty += size if row.get("side") == "long" else -size
                avg = _exact(row.get("entryPrice")) or avg
        return qty, avg

    async def balances(self) -> dict[str, Decimal]:
        try:
            balance = await self.client.fetch_balance()
        except Exception as exc:
            raise classify(exc) from exc
        totals = {coin: _exact(total) for coin, total in (balance.get("total") or {}).items()}
        return {coin: total for coin, total in totals.items() if total}


def _exact(value: Any) -> Decimal | None:
    """A number from ccxt as an exact Decimal; None for None or what is not a
    finite number (the caller decides what missing data means)."""
    if value is None:
        return None
    try:
        return to_decimal(value)
    except ValueError:
        log.warning("not a number from the venue: %r", value)
        return None


def _ccxt_number(value: Decimal | None) -> float | None:
    """What ccxt's `create_order` takes: a float, which for a value already on
    the step or tick (at most 15 significant digits) is the same decimal."""
    return None if value is None else float(value)
