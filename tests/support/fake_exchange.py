"""The venue-neutral core of the local fake exchanges: an account (orders,
trades, positions, balances) and an HTTP server with fault injection.

A fake of one exchange (`fake_bybit`, `fake_binance`, `fake_mexc`) subclasses
`FakeExchange` and supplies `authenticate` (the venue's signature check) and
`route` (its REST paths and payloads); everything else is here:

- orders are kept by client order id; market orders and limits that cross
  fill at once at the symbol's mark price; post-only that would cross is
  rejected; IOC fills what crosses and cancels the rest; FOK all or nothing;
  a repeated client order id is refused (`Duplicate`);
- `fill(client_id, qty)` fills a resting order (partially) for a test;
- `fail_next(kind, n)` injects faults into the next order calls: `5xx`,
  `ratelimit`, `timeout` (the order is placed, the answer comes after the
  client gave up) and `lost` (placed, then the answer is lost: HTTP 504);
- `outage = True`: every call answers HTTP 502 until it is set back;
  `latency_s`: every answer is that much late;
- `calls` records every request (time, method, path, signed), for the
  rate-limit tests.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.fake_stream import FakeStream, StreamConnection

__all__ = ["INSTRUMENTS", "Call", "Duplicate", "FakeExchange", "FakeOrder", "FakeTrade", "Reply"]

INSTRUMENTS = {
    "BTCUSDT": {"base": "BTC", "min_qty": "0.001", "step": "0.001", "tick": "0.10", "price": 60000.0},
    "ETHUSDT": {"base": "ETH", "min_qty": "0.01", "step": "0.01", "tick": "0.01", "price": 3000.0},
}
FEE_RATE = 0.00055
OPEN = ("new", "partially_filled")


def _exact(a: float, b: float = 0.0) -> float:
    """`a + b` as an exchange computes it, in decimal (0.1 + 0.2 is 0.3): a
    real venue reports its quantities as decimal strings, never float drift."""
    return float(Decimal(repr(a)) + Decimal(repr(b)))


class Duplicate(Exception):
    """The client order id is used already."""


@dataclass
class FakeOrder:
    client_id: str
    symbol: str
    side: str  # buy | sell
    kind: str  # market | limit
    qty: float
    price: float
    tif: str  # GTC | IOC | FOK | PO
    reduce_only: bool
    trigger: float = 0.0
    market: str = ""  # linear | spot: the stream it is pushed on
    order_id: str = field(default_factory=lambda: str(uuid.uuid4().int % 10**18))
    status: str = "new"  # new | partially_filled | filled | canceled | rejected
    filled: float = 0.0
    value: float = 0.0
    fee: float = 0.0
    created: int = field(default_factory=lambda: int(time.time() * 1000))
    updated: int = field(default_factory=lambda: int(time.time() * 1000))
    # A conditional order a venue's own service holds (Binance's algo orders):
    # it fires as a new order (`actual_id`) of the matching engine.
    algo_id: str = ""
    actual_id: str = ""
    # A conditional order fires as the price rises to its trigger (True) or
    # falls to it (False); None: as a stop-loss does (a sell falling, a buy rising).
    rising: bool | None = None
    expires: int = 0  # ms; a conditional order the venue drops unfired after this (0: never)

    def fires_at(self, price: float) -> bool:
        rising = self.side == "buy" if self.rising is None else self.rising
        return price >= self.trigger if rising else price <= self.trigger

    @property
    def avg(self) -> float:
        return self.value / self.filled if self.filled else 0.0

    @property
    def remaining(self) -> float:
        return max(float(Decimal(repr(self.qty)) - Decimal(repr(self.filled))), 0.0)


@dataclass
class FakeTrade:
    trade_id: str
    order: FakeOrder
    qty: float
    price: float
    fee: float
    maker: bool
    ts: int


@dataclass
class Call:
    at: float
    method: str
    path: str
    signed: bool
    query: str = ""


@dataclass
class Reply:
    status: int
    payload: Any


class FakeExchange:
    #: Paths whose calls take injected faults (the order endpoints).
    fault_paths: tuple[str, ...] = ()
    #: Serves a private websocket stream too (`ws_url`).
    has_stream = False

    def __init__(self, api_key: str = "test-key", secret: str = "test-secret") -> None:
        self.api_key, self.secret = api_key, secret
        self.orders: dict[str, FakeOrder] = {}  # by client order id
        self.trades: list[FakeTrade] = []
        self.deposits: dict[str, float] = {}  # spot coins in the wallet apart from trades
        self.marks = {symbol: info["price"] for symbol, info in INSTRUMENTS.items()}  # the market now
        self._last_trade_id = 10**12 + uuid.uuid4().int % 10**12
        self.calls: list[Call] = []
        self.bad_signatures = 0
        self.faults: deque[str] = deque()
        self.outage = False  # every call answers 502
        self.latency_s = 0.0  # every answer waits this long
        # path → released when set: a call to it waits, then is lost unapplied (`hold`)
        self.held: dict[str, threading.Event] = {}
        self.lock = threading.RLock()  # the account; held while a change is published
        self.stream: FakeStream | None = None
        self.ws_logins = {"ok": 0, "bad": 0}
        # The exchange's own cancel-all-after: symbol ("*": every one) → deadline
        # (time.time()); what fired, as (symbol, client ids canceled).
        self.countdowns: dict[str, float] = {}
        self.cancel_after_fired: list[tuple[str, list[str]]] = []
        self._watching = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.watcher = threading.Thread(target=self._watch_countdowns, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def requests(self) -> list[tuple[str, str, bool]]:
        return [(c.method, c.path, c.signed) for c in self.calls]

    def start(self) -> FakeExchange:
        self.thread.start()
        self.watcher.start()
        if self.has_stream:
            self.stream = FakeStream(self).start()
        return self

    def stop(self) -> None:
        self._watching.set()
        self.watcher.join(5)
        self.server.shutdown()
        self.server.server_close()
        if self.stream is not None:
            self.stream.stop()

    def hold(self, path: str) -> threading.Event:
        """Calls to `path` wait until the returned event is set, then fail
        (504) without being applied: a request lost on its way in."""
        self.held[path] = threading.Event()
        return self.held[path]

    def fail_next(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.faults.extend([kind] * n)

    # --- the account ------------------------------------------------------------------------

    def place(
        self,
        *,
        client_id: str,
        symbol: str,
        side: str,
        kind: str,
        qty: float,
        price: float = 0.0,
        tif: str = "GTC",
        reduce_only: bool = False,
        trigger: float = 0.0,
        market: str = "",
    ) -> FakeOrder:
        if not client_id:
            client_id = uuid.uuid4().hex
        if client_id in self.orders:
            raise Duplicate(client_id)
        order = FakeOrder(client_id, symbol, side, kind, qty, price, tif, reduce_only, trigger, market)
        self.orders[client_id] = order
        mark = self.marks[symbol]
        crosses = not trigger and (
            kind == "market" or (side == "buy" and price >= mark) or (side == "sell" and 0 < price <= mark)
        )
        if tif == "PO" and crosses:
            order.status = "canceled"
        elif crosses:
            self._fill(order, qty, mark, maker=False)
        elif tif in ("IOC", "FOK"):
            order.status = "canceled"
        if not order.filled:
            self._publish("order", order)
        return order

    def move_price(self, symbol: str, price: float) -> None:
        """The market moves to `price`: conditional orders whose trigger it
        reaches fire as market orders (a sell stop as the price falls to it, a
        buy stop as it rises), and resting limits it crosses fill as maker.
        A reduce-only order never trades past the position: what is left of
        it when the position is flat is canceled."""
        with self.lock:
            self.marks[symbol] = price
            for order in [o for o in self.open_orders(symbol)]:
                if order.trigger and order.expires and order.expires < time.time() * 1000:
                    order.status, order.updated = "canceled", int(time.time() * 1000)  # expired unfired
                elif order.trigger:
                    if order.fires_at(price):
                        self._fire(order, price)
                elif order.kind == "limit" and (price <= order.price if order.side == "buy"
                                                else price >= order.price):
                    self._trade_reduce_aware(order, order.price, maker=True)

    def _fire(self, order: FakeOrder, price: float) -> None:
        """A conditional order's trigger is reached: it trades as a market order
        — one held by a service of its own (`algo_id`: Binance's algo orders,
        MEXC's trigger orders) as a new market order of the matching engine,
        under its own ids (`actual_id`), after which it is done."""
        if not order.algo_id:
            self._trade_reduce_aware(order, price, maker=False)
            return
        actual = FakeOrder(f"algo-{order.algo_id}", order.symbol, order.side, "market", order.qty, 0.0, "GTC",
                           order.reduce_only, market=order.market)
        self.orders[actual.client_id] = actual
        self._trade_reduce_aware(actual, price, maker=False)
        order.actual_id, order.filled = actual.order_id, actual.filled
        order.value, order.fee = actual.value, actual.fee
        order.status = "filled" if actual.filled else "canceled"
        order.updated = int(time.time() * 1000)

    def _trade_reduce_aware(self, order: FakeOrder, price: float, *, maker: bool) -> None:
        qty = order.remaining
        if order.reduce_only:
            position = self.position(order.symbol)
            reduces = (order.side == "sell" and position > 0) or (order.side == "buy" and position < 0)
            qty = min(qty, abs(position)) if reduces else 0.0
        if qty <= 0:
            order.status = "canceled"
            order.updated = int(time.time() * 1000)
            self._publish("order", order)
            return
        self._fill(order, qty, price, maker=maker)
        if order.remaining > 0:  # clipped to the position: the rest is canceled
            order.status = "canceled"
            self._publish("order", order)

    def fill(self, client_id: str, qty: float, price: float | None = None) -> None:
        """A resting order trades `qty` (a test's market move)."""
        with self.lock:
            order = self.orders[client_id]
            self._fill(order, min(qty, order.remaining), price or order.price, maker=True)

    def _fill(self, order: FakeOrder, qty: float, price: float, *, maker: bool) -> None:
        fee = qty * price * FEE_RATE
        order.filled = _exact(order.filled, qty)
        order.value = _exact(order.value, qty * price)
        order.fee = _exact(order.fee, fee)
        order.status = "filled" if order.remaining <= 0 else "partially_filled"
        order.updated = int(time.time() * 1000)
        self._last_trade_id += 1  # numeric and rising, as Binance's and MEXC's are
        trade_id = str(self._last_trade_id)
        self.trades.append(FakeTrade(trade_id, order, qty, price, fee, maker, order.updated))
        self._publish("trade", self.trades[-1])
        self._publish("order", order)

    def bad_trade(self, client_id: str | None, qty: float | None, price: float,
                  symbol: str = "BTCUSDT", side: str = "buy") -> None:
        """A trade as a misbehaving venue reports it: no amount (`qty` None), a
        zero quantity or price, or (`client_id` None) of an order nobody here
        placed. It counts in the venue's position like any trade."""
        with self.lock:
            order = self.orders[client_id] if client_id else FakeOrder(
                uuid.uuid4().hex, symbol, side, "limit", qty or 0.0, price, "GTC", False, status="filled")
            self._last_trade_id += 1
            now = int(time.time() * 1000)
            trade = FakeTrade(str(self._last_trade_id), order, qty, price, 0.0, True, now)  # type: ignore[arg-type]
            self.trades.append(trade)
            self._publish("trade", trade)

    def cancel(self, *, client_id: str = "", order_id: str = "") -> FakeOrder | None:
        order = self.find(client_id=client_id, order_id=order_id)
        if order is None or order.status not in OPEN:
            return None
        order.status = "canceled"
        order.updated = int(time.time() * 1000)
        self._publish("order", order)
        return order

    def arm_countdown(self, symbol: str, seconds: float) -> None:
        """Cancel every open order of `symbol` ("*": all) unless armed again
        within `seconds`; 0 disarms."""
        with self.lock:
            if seconds:
                self.countdowns[symbol] = time.time() + seconds
            else:
                self.countdowns.pop(symbol, None)

    def _watch_countdowns(self) -> None:
        """Fires on its own, with no request coming in: the client may be dead."""
        while not self._watching.wait(0.02):
            with self.lock:
                now = time.time()
                for symbol in [s for s, deadline in self.countdowns.items() if deadline <= now]:
                    del self.countdowns[symbol]
                    gone = [o.client_id for o in self.open_orders("" if symbol == "*" else symbol)
                            if self.cancel(client_id=o.client_id) is not None]
                    self.cancel_after_fired.append((symbol, gone))

    def find(self, *, client_id: str = "", order_id: str = "") -> FakeOrder | None:
        if client_id:
            return self.orders.get(client_id)
        return next((o for o in self.orders.values() if o.order_id == order_id), None) if order_id else None

    def open_orders(self, symbol: str = "") -> list[FakeOrder]:
        return [o for o in self.orders.values() if o.status in OPEN and (not symbol or o.symbol == symbol)]

    def my_trades(
        self, symbol: str = "", since: int = 0, until: int | None = None, *, newest_first: bool = False
    ) -> list[FakeTrade]:
        """Our trades in [since, until], in the order the venue pages them."""
        found = [
            t
            for t in self.trades
            if (not symbol or t.order.symbol == symbol) and since <= t.ts <= (until or t.ts)
        ]
        return found[::-1] if newest_first else found

    @staticmethod
    def page(items: list[Any], offset: int, size: int) -> tuple[list[Any], int | None]:
        """One page of `items` and the next page's offset (None: the last page)."""
        end = offset + size
        return items[offset:end], (end if end < len(items) else None)

    def position(self, symbol: str) -> float:
        return float(sum(
            (Decimal(repr(t.qty)) * (1 if t.order.side == "buy" else -1) for t in self.trades
             if t.order.symbol == symbol and t.qty is not None), Decimal(0)))

    def balance(self, coin: str) -> float:
        """Spot holdings: 100,000 USDT at the start, moved by every trade."""
        if coin == "USDT":
            return 100_000.0 - sum(
                (t.qty * t.price if t.order.side == "buy" else -t.qty * t.price) + t.fee for t in self.trades
                if t.qty is not None
            )
        return self.deposits.get(coin, 0.0) + sum(
            self.position(s) for s, i in INSTRUMENTS.items() if i["base"] == coin)

    # --- what a venue supplies ----------------------------------------------------------------

    # --- the private stream (websocket) -------------------------------------------------------

    def _publish(self, kind: str, item: Any) -> None:
        if self.stream is not None:
            self.stream.publish(kind, item)

    @property
    def ws_url(self) -> str:
        assert self.stream is not None, "this fake has no stream"
        return self.stream.url

    def ws_open(self, conn: StreamConnection) -> str | None:
        """A new connection: None to accept it, or the text sent before closing it."""
        return None

    def ws_receive(self, conn: StreamConnection, message: Any) -> list[Any]:
        """The replies to one message a client sent."""
        return []

    def ws_events(self, conn: StreamConnection, kind: str, item: Any) -> list[Any]:
        """What `conn` is pushed when an order or a trade ("order", "trade") changed."""
        return []

    def ws_following(self, conn: StreamConnection) -> bool:
        """`conn` is authenticated and pushed every order and trade change."""
        return False

    def ws_closed(self, conn: StreamConnection) -> None:
        """A connection is gone (the client closed it, or died)."""

    def ws_signed(self, good: bool) -> None:
        with self.lock:
            self.ws_logins["ok" if good else "bad"] += 1

    # --- REST -----------------------------------------------------------------------------------

    def authenticate(self, method: str, path: str, query: str, body: str, headers: Any) -> bool | None:
        """True: signed and valid; False: signed and invalid; None: not a signed call."""
        raise NotImplementedError

    def route(self, method: str, path: str, query: dict[str, str], body: str) -> Reply:
        raise NotImplementedError

    def bad_signature(self) -> Reply:
        raise NotImplementedError

    def rate_limited(self) -> Reply:
        raise NotImplementedError

    # --- HTTP -----------------------------------------------------------------------------------

    def _serve(self, method: str, target: str, raw: str, headers: Any) -> Reply:
        parts = urlsplit(target)
        verdict = self.authenticate(method, parts.path, parts.query, raw, headers)
        with self.lock:
            self.calls.append(Call(time.monotonic(), method, parts.path, verdict is not None, parts.query))
            fault = self.faults.popleft() if self.faults and parts.path in self.fault_paths else None
        if self.latency_s:
            time.sleep(self.latency_s)
        if parts.path in self.held:
            self.held[parts.path].wait(30)
            return Reply(504, {"error": "gateway timeout"})
        if verdict is False:
            self.bad_signatures += 1
            return self.bad_signature()
        if fault == "5xx" or self.outage:
            return Reply(502, {"error": "bad gateway"})
        if fault == "ratelimit":
            return self.rate_limited()
        with self.lock:
            reply = self.route(method, parts.path, dict(parse_qsl(parts.query)), raw)
        if fault == "timeout":
            time.sleep(3.0)
        if fault == "lost":
            return Reply(504, {"error": "gateway timeout"})
        return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                reply = fake._serve(self.command, self.path, raw, self.headers)
                data = json.dumps(reply.payload).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_DELETE = do_PUT = _any

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler
