"""The paper venue: an exchange simulated in the engine, behind the same
`Exchange` interface as every exchange (`PaperExchange`).

It keeps its own account — positions (net quantity, average entry), balance
(realised PnL minus fees), open orders — so the engine can reconcile against
it as against a real exchange. It behaves like one:

- market orders fill at the quote (the last market data, else the configured
  reference price) with `slippage_bps` against the taker, after `latency_ms`;
- limit orders that cross fill at once as taker (at the quote, never worse
  than the limit); the rest rests and fills as maker at its limit price when
  a later quote crosses it;
- `liquidity` caps the quantity one order fills per event (0 = unlimited),
  which is how partial fills happen;
- post-only (`PO`) that would cross is rejected; `IOC` fills what it can now
  and expires the rest; `FOK` fills everything now or expires unfilled;
- reduce-only is rejected when it would not reduce the position, and is
  clipped to the position when it is larger;
- stop orders (bracket stop-losses) rest until the last price reaches the
  trigger, then fill as market orders;
- a repeated client order id is refused with the order that has it
  (`DuplicateClientOrderId`), like Bybit 110072 / Binance -4116.

`PaperVenue` is the matching book, pure: state changes are collected as
store writes (`drain_writes()`), the clock comes in as `now_ms`.
`PaperExchange` serves it as an exchange: ccxt-shaped answers, its own
RocksDB directory (`<data>/paper/<venue>`: written before it answers,
safe from a SIGKILL, not synced against a power loss; final orders and
trades retired after the engine's retention), its trades kept for
`my_trades`, and a private stream (`watch`) fed by every change. Orders delayed by `latency_ms` execute while
the stream is watched or at the next request.

Threads: its coroutines run on the worker's loop, `market_data` and the
test controls in the adapter's handlers (maybe on thespian's thread): every
one holds the exchange's own lock, never the adapter's.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import orjson

from titan_actors.domain.ids import trade_id
from titan_actors.domain.money import (
    ZERO,
    Instrument,
    json_default,
    loads_exact,
    to_decimal,
    to_decimal_or_none,
)
from titan_actors.domain.orders import FINAL_STATUSES, Fill, stop_triggered
from titan_actors.runtime.clock import now_ms
from titan_actors.runtime.retention import Retention
from titan_actors.runtime.store import Store
from titan_actors.venues.errors import (
    DuplicateClientOrderId,
    VenueRejected,
    VenueUnknownOutcome,
    VenueUnreachable,
)

__all__ = ["PaperExchange", "PaperSettings", "PaperVenue", "VenueEvent", "VenueOrder"]

_BPS = Decimal(10_000)
ORDER_KEY = b"paper:o:"
OPEN_KEY = b"paper:open:"
ACCOUNT_KEY = b"paper:account"
#: `paper:t:<symbol>\x00<ts:013d>:<trade id>`: a trade, for `my_trades` after a restart.
TRADE_KEY = b"paper:t:"
#: Trades kept in memory per symbol (the newest), for `my_trades`.
_TRADES_KEPT = 100_000
#: How often the retention of the paper venue's own records is worked off.
_PRUNE_EVERY_MS = 60_000


@dataclass(frozen=True, slots=True)
class PaperSettings:
    reference_prices: dict[str, Decimal]
    latency_ms: int = 0
    slippage_bps: Decimal = ZERO
    taker_fee_bps: Decimal = Decimal("5.5")
    maker_fee_bps: Decimal = Decimal(2)
    liquidity: Decimal = ZERO
    balance: Decimal = Decimal(100_000)


@dataclass(frozen=True, slots=True)
class VenueOrder:
    client_order_id: str
    order_id: str
    symbol: str
    side: str
    quantity: Decimal
    order_type: str  # market | limit | stop
    price: Decimal | None
    trigger_price: Decimal | None
    time_in_force: str
    reduce_only: bool
    status: str
    filled_qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    fills: int = 0
    created_ts: int = 0
    due_ts: int = 0
    reason: str = ""

    @property
    def remaining(self) -> Decimal:
        return max(self.quantity - self.filled_qty, ZERO)

    @staticmethod
    def from_json(data: bytes) -> VenueOrder:
        raw = loads_exact(data)
        for name in ("quantity", "filled_qty", "avg_price"):
            raw[name] = to_decimal(raw[name], field=name)
        for name in ("price", "trigger_price"):
            raw[name] = to_decimal_or_none(raw.get(name), field=name)
        return VenueOrder(**raw)


@dataclass(frozen=True, slots=True)
class VenueEvent:
    """One order change at the venue, with the fill that caused it if any."""

    order: VenueOrder
    fill: Fill | None = None


class PaperVenue:
    def __init__(self, settings: PaperSettings, *, load_order: Callable[[str], VenueOrder | None]
                 = lambda _coid: None) -> None:
        self.settings = settings
        self.quotes: dict[str, tuple[Decimal, Decimal, Decimal]] = {
            s: (p, p, p) for s, p in settings.reference_prices.items()
        }
        self.open: dict[str, VenueOrder] = {}
        self.recent: dict[str, VenueOrder] = {}
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}
        self.balance = settings.balance
        self.seq = 0
        self._load_order = load_order
        self._writes: dict[bytes, bytes | None] = {}
        self._retired: list[bytes] = []

    # --- persistence ------------------------------------------------------------

    def restore(self, account: bytes | None, open_orders: Iterable[bytes]) -> None:
        if account:
            raw = loads_exact(account)
            self.positions = {s: (to_decimal(q), to_decimal(a)) for s, (q, a) in raw["positions"].items()}
            self.balance, self.seq = to_decimal(raw["balance"]), raw["seq"]
        for data in open_orders:
            order = VenueOrder.from_json(data)
            self.open[order.client_order_id] = order

    def drain_writes(self) -> list[tuple[bytes, bytes | None]]:
        """Store writes since the last call (`None` value: delete the key)."""
        writes, self._writes = list(self._writes.items()), {}
        return writes

    def drain_retired(self) -> list[bytes]:
        """Keys of orders that became final since the last call (to retire later)."""
        retired, self._retired = self._retired, []
        return retired

    def _save(self, order: VenueOrder) -> None:
        coid = order.client_order_id.encode()
        self._writes[ORDER_KEY + coid] = orjson.dumps(order, default=json_default)
        if order.status in FINAL_STATUSES:
            self.open.pop(order.client_order_id, None)
            self.recent[order.client_order_id] = order
            if len(self.recent) > 10_000:
                self.recent.pop(next(iter(self.recent)))
            self._writes[OPEN_KEY + coid] = None
            self._retired.append(ORDER_KEY + coid)
        else:
            self.open[order.client_order_id] = order
            self._writes[OPEN_KEY + coid] = orjson.dumps(order, default=json_default)

    def _save_account(self) -> None:
        self._writes[ACCOUNT_KEY] = orjson.dumps(
            {"positions": self.positions, "balance": self.balance, "seq": self.seq}, default=json_default)

    # --- queries ------------------------------------------------------------------

    def find(self, client_order_id: str) -> VenueOrder | None:
        """Look an order up by client order id (open, recent, or in the store)."""
        return (self.open.get(client_order_id) or self.recent.get(client_order_id)
                or self._load_order(client_order_id))

    def position(self, symbol: str) -> Decimal:
        return self.positions.get(symbol, (ZERO, ZERO))[0]

    def quote(self, symbol: str) -> tuple[Decimal, Decimal, Decimal] | None:
        return self.quotes.get(symbol)

    # --- commands -----------------------------------------------------------------

    def submit(self, spec: dict[str, Any], now_ms: int) -> list[VenueEvent]:
        """Place an order: `spec` has client_order_id, symbol, side, quantity,
        order_type, price, trigger_price, time_in_force, reduce_only."""
        existing = self.find(spec["client_order_id"])
        if existing is not None:
            raise DuplicateClientOrderId(f"client order id {existing.client_order_id} is already used",
                                         existing)
        symbol = spec["symbol"]
        if symbol not in self.quotes:
            raise VenueRejected(f"no price for {symbol}: no market data and no reference price")
        quantity = spec["quantity"]
        if spec["reduce_only"]:
            quantity = self._reduce_only_qty(symbol, spec["side"], quantity)
        self.seq += 1
        order = VenueOrder(
            client_order_id=spec["client_order_id"], order_id=f"P{self.seq}", symbol=symbol,
            side=spec["side"], quantity=quantity, order_type=spec["order_type"], price=spec.get("price"),
            trigger_price=spec.get("trigger_price"), time_in_force=spec["time_in_force"],
            reduce_only=spec["reduce_only"], status="ACCEPTED", created_ts=now_ms,
        )
        if order.order_type == "limit" and order.time_in_force == "PO" and self._crosses(order):
            raise VenueRejected("post-only order would take liquidity")
        if order.order_type == "market" and self.settings.latency_ms > 0:
            order = replace(order, due_ts=now_ms + self.settings.latency_ms)
        self._save(order)
        self._save_account()
        if order.due_ts:
            return [VenueEvent(order)]  # executes in run_due() once the latency has passed
        return [VenueEvent(order), *self._execute_new(order, now_ms)]

    def _reduce_only_qty(self, symbol: str, side: str, quantity: Decimal) -> Decimal:
        position = self.position(symbol)
        reduces = (side == "buy" and position < 0) or (side == "sell" and position > 0)
        if not reduces:
            raise VenueRejected("reduce-only order would not reduce a position")
        return min(quantity, abs(position))

    def _execute_new(self, order: VenueOrder, now_ms: int) -> list[VenueEvent]:
        if order.order_type == "market":
            return self._take(order, now_ms, expire_rest=True)
        if order.order_type == "stop":
            return []
        crosses = self._crosses(order)
        tif = order.time_in_force
        if tif == "FOK":
            available = self.settings.liquidity or order.quantity
            if not crosses or available < order.quantity:
                return [self._close(order, "EXPIRED", now_ms, "FOK order could not fill in full")]
            return self._take(order, now_ms, expire_rest=True)
        if tif == "IOC":
            if not crosses:
                return [self._close(order, "EXPIRED", now_ms, "IOC order found nothing to fill")]
            return self._take(order, now_ms, expire_rest=True)
        return self._take(order, now_ms, expire_rest=False) if crosses else []

    def cancel(self, client_order_id: str, now_ms: int) -> list[VenueEvent]:
        order = self.open.get(client_order_id)
        if order is None:
            found = self.find(client_order_id)
            raise VenueRejected("order is already closed" if found else "unknown order")
        return [self._close(order, "CANCELED", now_ms, "canceled")]

    def resize(self, client_order_id: str, quantity: Decimal, now_ms: int) -> list[VenueEvent]:
        """A resting order's quantity changed in place (an amend), never below what filled."""
        order = self.open.get(client_order_id)
        if order is None:
            raise VenueRejected("order is not open")
        if quantity < order.filled_qty:
            raise VenueRejected(f"quantity {quantity} is below the filled {order.filled_qty}")
        order = replace(order, quantity=quantity)
        self._save(order)
        return [VenueEvent(order)]

    def on_quote(self, symbol: str, bid: Decimal, ask: Decimal, last: Decimal,
                 now_ms: int) -> list[VenueEvent]:
        """New market data: resting orders that it crosses fill, stops trigger."""
        self.quotes[symbol] = (bid, ask, last)
        events: list[VenueEvent] = []
        for order in [o for o in self.open.values() if o.symbol == symbol and not o.due_ts]:
            if order.order_type == "stop":
                if stop_triggered(order, last):
                    events += self._take(replace(order, order_type="market"), now_ms, expire_rest=True)
            elif order.order_type == "limit" and self._crosses(order):
                events += self._make(order, now_ms)
        return events

    def run_due(self, now_ms: int) -> list[VenueEvent]:
        """Market orders whose latency has passed execute now."""
        events: list[VenueEvent] = []
        for order in [o for o in self.open.values() if o.due_ts and o.due_ts <= now_ms]:
            events += self._take(replace(order, due_ts=0), now_ms, expire_rest=True)
        return events

    def next_due(self) -> int:
        return min((o.due_ts for o in self.open.values() if o.due_ts), default=0)

    # --- matching -------------------------------------------------------------------

    def _crosses(self, order: VenueOrder) -> bool:
        bid, ask, _last = self.quotes[order.symbol]
        return (order.side == "buy" and ask <= order.price) or (order.side == "sell" and bid >= order.price)

    def _take(self, order: VenueOrder, now_ms: int, *, expire_rest: bool) -> list[VenueEvent]:
        bid, ask, _last = self.quotes[order.symbol]
        slip = self.settings.slippage_bps / _BPS
        price = ask * (1 + slip) if order.side == "buy" else bid * (1 - slip)
        if order.order_type == "limit":
            price = min(price, order.price) if order.side == "buy" else max(price, order.price)
        events = self._fill(order, price, "taker", now_ms)
        order = events[-1].order if events else order
        if expire_rest and order.status not in FINAL_STATUSES:
            events.append(self._close(order, "EXPIRED", now_ms, "rest of an immediate order expired"))
        return events

    def _make(self, order: VenueOrder, now_ms: int) -> list[VenueEvent]:
        return self._fill(order, order.price, "maker", now_ms)

    def _fill(self, order: VenueOrder, price: Decimal, liquidity: str, now_ms: int) -> list[VenueEvent]:
        qty = order.remaining
        if self.settings.liquidity > 0:
            qty = min(qty, self.settings.liquidity)
        if order.reduce_only:
            position = abs(self.position(order.symbol))
            if not position:
                return [self._close(order, "CANCELED", now_ms, "reduce-only order: no position left")]
            qty = min(qty, position)
        if qty <= 0:
            return []
        bps = self.settings.taker_fee_bps if liquidity == "taker" else self.settings.maker_fee_bps
        fee = qty * price * bps / _BPS
        n = order.fills + 1
        fill = Fill(trade_id(order.order_id, n), qty, price, fee, liquidity, now_ms)
        filled = order.filled_qty + qty
        avg = (order.avg_price * order.filled_qty + price * qty) / filled
        status = "FILLED" if filled >= order.quantity else "PARTIALLY_FILLED"
        order = replace(order, filled_qty=filled, avg_price=avg, fills=n, status=status)
        self._book(order.symbol, order.side, qty, price, fee)
        self._save(order)
        self._save_account()
        return [VenueEvent(order, fill)]

    def _book(self, symbol: str, side: str, qty: Decimal, price: Decimal, fee: Decimal) -> None:
        position, avg = self.positions.get(symbol, (ZERO, ZERO))
        signed = qty if side == "buy" else -qty
        realised = ZERO
        if not position or (position > 0) == (signed > 0):
            total = abs(position) + qty
            avg = (abs(position) * avg + qty * price) / total
            position += signed
        else:
            closing = min(abs(position), qty)
            realised = closing * (price - avg) * (1 if position > 0 else -1)
            position += signed
            if not position:
                position, avg = ZERO, ZERO
            elif qty > closing:
                avg = price  # the position flipped: the rest opened at this price
        self.positions[symbol] = (position, avg)
        self.balance += realised - fee

    def _close(self, order: VenueOrder, status: str, now_ms: int, reason: str) -> VenueEvent:
        order = replace(order, status=status, reason=reason, due_ts=0)
        self._save(order)
        return VenueEvent(order)


# --- the paper venue as an exchange ----------------------------------------------------------

_CCXT_STATUS = {"ACCEPTED": "open", "PARTIALLY_FILLED": "open", "FILLED": "closed", "CANCELED": "canceled",
                "EXPIRED": "expired", "REJECTED": "rejected"}


@dataclass(frozen=True, slots=True)
class PaperMarket:
    symbol: str
    instrument: Instrument


class PaperMarkets(Mapping[str, PaperMarket]):
    """Every symbol is traded on the paper venue (at the price of its market
    data or reference); iterating names the ones it has seen."""

    def __init__(self, symbols: Iterable[str] = ()) -> None:
        self._seen: dict[str, PaperMarket] = {}
        for symbol in symbols:
            self[symbol]

    def __getitem__(self, symbol: str) -> PaperMarket:
        return self._seen.setdefault(symbol, PaperMarket(symbol, Instrument(symbol)))

    def get(self, symbol: str, default: Any = None) -> PaperMarket:  # type: ignore[override]
        return self[symbol]

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and bool(symbol)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._seen))

    def __len__(self) -> int:
        return len(self._seen)


def order_dict(order: VenueOrder) -> dict[str, Any]:
    """A paper order as ccxt's unified order."""
    return {"id": order.order_id, "clientOrderId": order.client_order_id, "symbol": order.symbol,
            "side": order.side, "type": order.order_type, "amount": order.quantity,
            "filled": order.filled_qty, "remaining": order.remaining if order.status not in FINAL_STATUSES
            else ZERO, "price": order.price, "average": order.avg_price or None,
            "triggerPrice": order.trigger_price, "status": _CCXT_STATUS.get(order.status, "open"),
            "timeInForce": order.time_in_force, "reduceOnly": order.reduce_only,
            "timestamp": order.created_ts, "info": {"rejectReason": order.reason}}


def _trade_dict(order: VenueOrder, fill: Fill) -> dict[str, Any]:
    return {"id": fill.trade_id, "order": order.order_id, "clientOrderId": order.client_order_id,
            "symbol": order.symbol, "side": order.side, "amount": fill.qty, "price": fill.price,
            "fee": {"cost": fill.fee}, "takerOrMaker": fill.liquidity, "timestamp": fill.ts}


def _read_trade(data: bytes) -> dict[str, Any]:
    trade = loads_exact(data)
    for name in ("amount", "price"):
        trade[name] = to_decimal(trade[name], field=name)
    trade["fee"] = {"cost": to_decimal(trade["fee"]["cost"], field="fee")}
    return trade


async def _nothing() -> None:
    return None


class PaperExchange:
    """The paper venue behind the `Exchange` interface (see the module's docstring)."""

    stream_unavailable = ""
    algo_stops = False
    amends = True
    holds_stops = True
    cancel_after = ""
    # No limit of its own: a bucket this large never makes a request wait.
    default_rate_per_s = 1_000_000.0
    published_limit_per_s = 2_000_001.0

    def __init__(self, settings: PaperSettings, *, store: Store, retention: Retention) -> None:
        self._lock = threading.Lock()
        self._store = store
        self._retention = retention
        self.venue = PaperVenue(settings, load_order=self._load_order)
        self.venue.restore(store.get(ACCOUNT_KEY), (v for _k, v in store.items(OPEN_KEY)))
        self.markets = PaperMarkets([*settings.reference_prices, *self.venue.positions])
        self.down = False
        self._trades: dict[str, collections.deque[dict[str, Any]]] = {}
        for _key, value in store.items(TRADE_KEY):  # in key order: by symbol, then time
            trade = _read_trade(value)
            self._trades_of(trade["symbol"]).append(trade)
        self._pending: dict[str, dict[str, list[dict[str, Any]]]] = {"orders": {}, "trades": {}}
        self._changed: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._pruned_at = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any], *, data_dir: str,
                    retention_ms: int) -> PaperExchange:
        """The paper venue of a `[venues.X]` section, its records in `<data_dir>/paper/<name>`."""
        defaults = PaperSettings({})
        settings = PaperSettings(
            reference_prices={s: to_decimal(p, field=f"reference_prices.{s}")
                              for s, p in cfg.get("reference_prices", {}).items()},
            latency_ms=int(cfg.get("latency_ms", 0)),
            **{name: to_decimal(cfg.get(name, getattr(defaults, name)), field=name)
               for name in ("slippage_bps", "taker_fee_bps", "maker_fee_bps", "liquidity", "balance")},
        )
        # Written through RocksDB's log, never synced: a SIGKILL loses nothing,
        # a power loss may lose its last changes (a simulator; reconciliation
        # reports what differs) — a sync per request would double the CONFIRM's.
        store = Store(os.path.join(data_dir, "paper", cfg.get("name", "paper")), fsync=False)
        return cls(settings, store=store, retention=Retention(store, b"paper:r:", retention_ms))

    def _load_order(self, coid: str) -> VenueOrder | None:
        data = self._store.get(ORDER_KEY + coid.encode())
        return VenueOrder.from_json(data) if data is not None else None

    def _trades_of(self, symbol: str) -> collections.deque[dict[str, Any]]:
        trades = self._trades.get(symbol)
        if trades is None:
            trades = self._trades[symbol] = collections.deque(maxlen=_TRADES_KEPT)
        return trades

    # --- the interface's coroutines ---------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def close(self) -> Any:
        """Closed at once (its files too), so the venue can be opened again
        right away; the coroutine returned has nothing left to do."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._store.close()
        return _nothing()

    async def watch(self, what: str) -> dict[str, list[dict[str, Any]]]:
        changed = self._changed.setdefault(what, asyncio.Event())
        while True:
            with self._lock:
                now = self._begin()
                if now - self._pruned_at >= _PRUNE_EVERY_MS:
                    self._pruned_at = now
                    self._retention.prune(now)
                batch, self._pending[what] = self._pending[what], {}
                changed.clear()
                due = self.venue.next_due()
            if batch:
                return batch
            wait = max((due - now) / 1000, 0.001) if due else _PRUNE_EVERY_MS / 1000
            try:
                await asyncio.wait_for(changed.wait(), wait)
            except TimeoutError:
                pass

    async def create(self, *, client_order_id: str, symbol: str, side: str, quantity: Decimal,
                     order_type: str, price: Decimal | None = None, time_in_force: str = "GTC",
                     reduce_only: bool = False, trigger_price: Decimal | None = None) -> dict[str, Any]:
        spec = {"client_order_id": client_order_id, "symbol": symbol, "side": side, "quantity": quantity,
                "order_type": order_type, "price": price, "time_in_force": time_in_force,
                "reduce_only": reduce_only, "trigger_price": trigger_price}
        return await self._call(lambda now: self.venue.submit(spec, now))

    async def resize(self, *, client_order_id: str, symbol: str, side: str, quantity: Decimal,
                     order_type: str, price: Decimal | None, trigger_price: Decimal | None) -> dict[str, Any]:
        return await self._call(lambda now: self.venue.resize(client_order_id, quantity, now))

    async def cancel(self, *, client_order_id: str, symbol: str, conditional: bool = False) -> dict[str, Any]:
        return await self._call(lambda now: self.venue.cancel(client_order_id, now))

    async def fetch_by_client_id(self, *, client_order_id: str, symbol: str,
                                 conditional: bool = False) -> dict[str, Any] | None:
        order = await self._read(lambda: self.venue.find(client_order_id))
        return order_dict(order) if order is not None else None

    async def open_orders(self, symbol: str) -> list[dict[str, Any]]:
        return await self._read(lambda: [order_dict(o) for o in self.venue.open.values()
                                         if o.symbol == symbol])

    async def my_trades(self, symbol: str, since_ms: int, page: dict[str, Any] | None = None
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        def since() -> list[dict[str, Any]]:
            found = []
            for trade in reversed(self._trades.get(symbol, ())):
                if trade["timestamp"] < since_ms:
                    break
                found.append(trade)
            return found[::-1]
        return await self._read(since), []

    async def position(self, symbol: str) -> tuple[Decimal, Decimal | None]:
        return await self._read(lambda: self.venue.positions.get(symbol, (ZERO, ZERO)))

    async def balances(self) -> dict[str, Decimal]:
        return await self._read(lambda: {"USDT": self.venue.balance})

    async def arm_cancel_after(self, timeouts: dict[str, int], disarm: list[str]) -> None:
        """The paper venue lives and dies with the engine: nothing to arm."""

    # --- without a request --------------------------------------------------------------------

    def market_data(self, symbol: str, bid: Decimal, ask: Decimal, last: Decimal) -> None:
        with self._lock:
            if not self._closed:
                self.markets[symbol]
                self._publish(self.venue.on_quote(symbol, bid, ask, last, now_ms()))

    def status(self) -> dict[str, Any]:
        with self._lock:
            venue = self.venue
            return {"down": self.down, "markets": sorted(self.markets),
                    "positions": {s: {"qty": q, "avg_price": a} for s, (q, a) in venue.positions.items()},
                    "balance": venue.balance, "open_orders": len(venue.open), "orders_placed": venue.seq}

    def book(self) -> tuple[dict[str, Any], dict[str, Decimal]]:
        with self._lock:
            if self._closed:
                return {}, {}
            orders = {}
            for _key, value in self._store.items(ORDER_KEY):
                o = VenueOrder.from_json(value)
                orders[o.client_order_id] = {"symbol": o.symbol, "side": o.side, "status": o.status,
                                             "filled_qty": o.filled_qty, "fills": o.fills,
                                             "created_ts": o.created_ts, "quantity": o.quantity}
            return orders, {s: q for s, (q, _a) in self.venue.positions.items()}

    def simulate(self, action: str, **args: Any) -> str:
        """`position` (symbol, qty, avg_price): the account's position changed
        behind the engine's back; `place` (spec): an order placed outside the
        engine; `outage` (down): every request fails unreached until it ends."""
        with self._lock:
            if self._closed:
                return "the paper venue is closed"
            if action == "outage":
                self.down = bool(args["down"])
            elif action == "position":
                self.venue.positions[args["symbol"]] = (args["qty"], args["avg_price"])
                self.markets[args["symbol"]]
                self.venue._save_account()
                self._publish([])
            elif action == "place":
                try:
                    self._publish(self.venue.submit(args["spec"], now_ms()))
                except (VenueRejected, DuplicateClientOrderId) as exc:
                    return exc.reason
            else:
                return f"unknown simulation {action!r}"
            return ""

    # --- inside the lock ----------------------------------------------------------------------

    def _begin(self) -> int:
        """A request begins: the venue can be reached, and what is due executes first. Now."""
        self._ready()
        now = now_ms()
        self._publish(self.venue.run_due(now))
        return now

    def _ready(self) -> None:
        if self._closed:
            raise VenueUnknownOutcome("the paper venue is closed")
        if self.down:
            raise VenueUnreachable("the venue cannot be reached (simulated outage)")

    async def _read(self, what: Callable[[], Any]) -> Any:
        with self._lock:
            self._begin()
            return what()

    async def _call(self, change: Callable[[int], list[VenueEvent]]) -> dict[str, Any]:
        """A request that changes an order: what is due first, then the
        change, written before it is answered."""
        with self._lock:
            now = self._begin()
            events = change(now)
            self._publish(events)
            answer = order_dict(events[-1].order)
            answer["trades"] = [_trade_dict(e.order, e.fill) for e in events if e.fill is not None]
            return answer

    def _publish(self, events: list[VenueEvent]) -> None:
        """Write what changed (orders, account, trades) and hand it to the stream."""
        puts: list[tuple[bytes, bytes]] = []
        deletes: list[bytes] = []
        for key, value in self.venue.drain_writes():
            if value is None:
                deletes.append(key)
            else:
                puts.append((key, value))
        retired = self.venue.drain_retired()
        touched: set[str] = set()
        watched = self._changed  # a stream nobody follows keeps nothing
        for event in events:
            order, symbol = event.order, event.order.symbol
            if order.due_ts:
                touched.update(watched)  # a delayed order: the watchers wait until it is due
            if "orders" in watched:
                self._pending["orders"].setdefault(symbol, []).append(order_dict(order))
                touched.add("orders")
            if event.fill is not None:
                trade = _trade_dict(order, event.fill)
                key = TRADE_KEY + f"{symbol}\x00{event.fill.ts:013d}:{event.fill.trade_id}".encode()
                puts.append((key, orjson.dumps(trade, default=json_default)))
                retired.append(key)
                self._trades_of(symbol).append(trade)
                if "trades" in watched:
                    self._pending["trades"].setdefault(symbol, []).append(trade)
                    touched.add("trades")
        if retired:
            puts.append(self._retention.index(now_ms(), retired))
        if puts or deletes:
            self._store.write_batch(puts, deletes)
        for what in touched:
            self._notify(what)

    def _notify(self, what: str) -> None:
        changed, loop = self._changed.get(what), self._loop
        if changed is None or loop is None:
            return
        try:
            loop.call_soon_threadsafe(changed.set)
        except RuntimeError:
            pass  # the loop is closed: the worker is ending
