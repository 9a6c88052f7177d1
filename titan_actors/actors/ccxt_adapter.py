"""The venue adapter for exchanges reached through ccxt (Bybit, Binance, MEXC).

The journal, the commands and the reports are the paper adapter's
(`actors.venue.VenueAdapter`); what differs is that the venue answers later,
over HTTP, on its worker's asyncio loop (`AsyncHost`), and may not answer at all.

Every call to the exchange goes through the `Pacer`: a token bucket below
the venue's published limit, cancels first, one request at a time per order.
A CONFIRM that would wait longer than `max_queue_wait_ms` is refused `BUSY`
before anything is journaled.

An order's life:

- CONFIRM: journaled CONFIRMED/SUBMITTED first (in `VenueAdapter._submit`),
  then created with our client order id. The CONFIRM is answered when the
  venue answered: ACCEPTED, or VENUE_REJECTED with the venue's message for a
  sure refusal. Until then the gateway answers INTERNAL at its timeout and a
  resent CONFIRM waits for the same outcome (never a second create).
- An unknown outcome (timeout, 5xx, rate limit, lost connection) is looked
  up by client order id — after an exponential backoff — before any resend;
  a look-up that fails is retried, never skipped. Not at the venue and still
  within the order's `ttl_ms` of its confirmation: created again with the
  same client order id (a duplicate answer means it was placed: looked up
  again). Not at the venue and past its ttl: REJECTED, not sent.
- Fills come over the venue's private stream (ccxt.pro `watch_my_trades`,
  `watch_orders`) as they happen, and from polling our trades
  (`fetch_my_trades`, every page of them) every `poll_interval_ms` while
  orders are live, with the venue's trade ids, into the journal, the
  position actor's deliveries and the outbox — the paper venue's path; a
  trade seen both ways is applied once. Open orders are polled too; an
  order gone from them is looked up for its final status, which is applied
  once the fills that led to it have arrived.
- After a restart, before any new order is taken (`BUSY` meanwhile), every
  order journaled as sent but never answered is looked up and resolved as
  above.
- Bracket stops: native where the exchange holds them through ccxt (Bybit:
  a conditional market order with its trigger direction); elsewhere
  (`stops = "emulated"`) the stop is held here, ACCEPTED under the order id
  `emulated:<client order id>`, and sent as a reduce-only market order when
  the last price of the symbol's market data reaches the trigger.

Failure: a callback that raises crashes the actor (let it crash); the
supervisor restarts it and the journal tells it what to resolve.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from decimal import Decimal
from functools import partial
from typing import Any

from titan_actors.actors.venue import VenueAdapter, _venue_spec
from titan_actors.domain.dead_man import countdowns
from titan_actors.domain.money import ZERO, Instrument
from titan_actors.domain.orders import (
    EMULATED,
    FINAL_STATUSES,
    Fill,
    Order,
    apply_fill,
    arm_emulated_stop,
    fill_problem,
    fire_emulated_stop,
    stop_triggered,
    with_status,
)
from titan_actors.domain.reconciliation import FillInFlight
from titan_actors.domain.throttle import backoff_s
from titan_actors.messages import (
    CommandRefused,
    ExecutionReport,
    OrderAccepted,
    OrderCanceled,
    PriceUpdate,
    VenueHealth,
    VenueOrders,
    VenueState,
)
from titan_actors.runtime.clock import now_ms
from titan_actors.runtime.histogram import Histogram
from titan_actors.runtime.trace import trace
from titan_actors.venues.ccxt_venue import CcxtVenue, order_status
from titan_actors.venues.errors import DuplicateClientOrderId, VenueRejected
from titan_actors.venues.exchange import Exchange
from titan_actors.venues.pacing import Pacer, Request
from titan_actors.venues.paper import VenueEvent, VenueOrder

__all__ = ["CcxtVenueAdapter"]

log = logging.getLogger(__name__)

_MARKETS = "ccxt:markets"
_POLL = "ccxt:poll"
_MAX_WAITERS = 16
#: Fills are looked for from this long before the oldest live order's confirmation.
_TRADES_MARGIN_MS = 5_000
#: A guard against a venue whose pages never end; the next poll starts again.
_MAX_TRADES_PER_SCAN = 20_000
_QUOTE_FRESH_S = 30
_CANCEL_AFTER = "cancel-after"


class CcxtVenueAdapter(VenueAdapter):
    # --- start, stop, status -----------------------------------------------------------

    def _open_venue(self) -> None:
        cfg = self.config
        self.client: Exchange = CcxtVenue(
            exchange=self.exchange,
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
        # An account on a higher tier has a higher published limit.
        published = float(cfg.get("published_limit_per_s") or self.client.published_limit_per_s)
        rate = float(cfg.get("rate_limit_per_s") or self.client.default_rate_per_s)
        self.pacer = Pacer(
            rate=min(rate, published),
            published=published,
            max_wait_s=int(cfg.get("max_queue_wait_ms", 1000)) / 1000,
            now=time.monotonic(),
        )
        self.poll_s = int(cfg.get("poll_interval_ms", 1000)) / 1000
        self.backoff_s = (
            int(cfg.get("retry_backoff_ms", 200)) / 1000,
            int(cfg.get("retry_backoff_max_ms", 5000)) / 1000,
        )
        self.markets_ready = False
        self.connection = "connecting"
        self.last_error = ""
        self.resolving: set[str] | None = None  # orders to resolve after a restart; None: not begun
        self.waiters: dict[tuple[str, str], list[str]] = {}  # (client order id, command) → reply_to
        self.attempts: dict[str, int] = {}
        self.held: dict[str, tuple[str, Decimal]] = {}  # a final status waiting for its fills
        self.calls = {"requests": 0, "errors": 0}
        self.round_trip = Histogram()  # seconds from sending a request to handling its answer
        off = "" if cfg.get("stream", True) else "stream = false"
        self.stream_error = self.client.stream_unavailable or off
        self.stream = "off" if self.stream_error else "connecting"
        self.streaming = False
        self._polls = 0
        # Stops the venue holds itself (verified against each exchange's API
        # through ccxt: Bybit), or the engine holds and sends as a market order.
        stops = cfg.get("stops", "auto")
        self.emulate_stops = stops == "emulated" or (stops == "auto" and not self.client.holds_stops)
        self.armed: dict[str, str] = {  # client order id → symbol of an emulated stop not yet fired
            o.client_order_id: o.symbol for o in self.journal.live.values()
            if o.order_id.startswith(EMULATED) and o.order_type == "stop"}
        self.quoted: dict[str, float] = {}  # symbol → monotonic time of its last quote
        # Dead man's switches: symbol → timeout_ms wanted, and what the exchange has armed.
        self.countdowns: dict[str, int] = {}
        self.countdowns_armed: dict[str, int] = {}
        self.aio = self.async_host()
        self._load_markets(0)
        self.after(self.poll_s, _POLL)
        self.after(1.0, _CANCEL_AFTER)
        return None

    def release(self) -> None:
        try:
            self.aio.stop()
            self.aio.submit(self.client.close())
        except Exception:  # stopping anyway: nothing to save here
            log.exception("venue %s: closing the ccxt client", self.venue_name)

    def end_of_batch(self) -> None:
        super().end_of_batch()
        self._pump()  # what the batch's results (answers, stream updates) made due

    def status_detail(self) -> dict[str, Any]:
        now = time.monotonic()
        bucket = self.pacer.bucket
        return {
            **super().status_detail(),
            "connection": self.connection,
            "last_error": self.last_error,
            "stops": "emulated" if self.emulate_stops else "native",
            "armed_stops": len(self.armed),
            # Emulated stops fire from market data: these symbols have none fresh.
            "stops_without_prices": sorted({s for s in self.armed.values()
                                            if now - self.quoted.get(s, -_QUOTE_FRESH_S) > _QUOTE_FRESH_S}),
            "markets": sorted(self.client.markets),
            "rate_limit": {
                "limit_per_s": bucket.rate,
                "published_per_s": self.pacer.published,
                "headroom": round(bucket.available(now), 2),
                "queued": len(self.pacer.queue),
                "running": len(self.pacer.busy_keys),
            },
            "resolving": len(self.resolving or ()),
            "stream": self.stream,
            "stream_error": self.stream_error,
            "round_trip_s": self.round_trip.snapshot(),
            **self.calls,
        }

    def _unavailable_reason(self) -> str:
        if self.markets_ready:
            return ""
        why = self.last_error or "connecting"
        return f"venue {self.venue_name} ({self.exchange}) is not reachable yet: {why}"

    def _busy_reason(self) -> str:
        if self.resolving is None or self.resolving:
            return "the adapter is resolving orders journaled before its restart; retry shortly"
        if self.pacer.full():
            return f"venue {self.venue_name}: requests queued beyond the rate limit; retry shortly"
        return ""

    def _normalise(self, order: Order) -> tuple[Order, str]:
        market = self.client.markets.get(order.symbol)
        if market is None:
            if not self.markets_ready:
                return order, self._unavailable_reason()
            return order, f"symbol: {order.symbol} is not traded on venue {self.venue_name}"
        instrument = market.instrument
        qty = instrument.quantity(order.quantity)
        price = instrument.limit_price(order.price, order.side) if order.price is not None else None
        problem = instrument.too_small(qty, price)
        if problem:
            return order, f"quantity: {problem} on venue {self.venue_name}"
        stop = instrument.stop_price(order.stop_loss, "sell" if order.side == "buy" else "buy") \
            if order.stop_loss is not None else None
        take_profits = tuple(instrument.limit_price(p, "sell" if order.side == "buy" else "buy")
                             for p in order.take_profits)
        return replace(order, quantity=qty, price=price, stop_loss=stop, take_profits=take_profits), ""

    def _instrument(self, symbol: str) -> Instrument:
        market = self.client.markets.get(symbol)
        return market.instrument if market is not None else Instrument(symbol)

    # --- markets ------------------------------------------------------------------------

    def _load_markets(self, attempt: int) -> None:
        self.aio.submit(self.client.start(), lambda _r, error: self._on_markets(error, attempt))

    def _on_markets(self, error: BaseException | None, attempt: int) -> None:
        if error is not None:
            self._note_error(f"loading markets: {error!r}")
            self.after(self._delay(attempt), (_MARKETS, attempt + 1))
            return
        self.markets_ready, self.connection = True, "ready"
        log.info("venue %s: %d markets loaded", self.venue_name, len(self.client.markets))
        self._resolve_unanswered()
        self._follow_stream()

    def on_wakeup(self, payload: Any) -> None:
        if isinstance(payload, tuple) and payload[0] == _MARKETS:
            self._load_markets(payload[1])
        elif payload == _POLL:
            self._schedule_polls()
            self.after(self.poll_s, _POLL)
        elif payload == _CANCEL_AFTER:
            self._cancel_after_tick()
        else:
            super().on_wakeup(payload)

    # --- the exchange's cancel-all-after (dead man's switch) --------------------------------

    def _cancel_after(self, timeouts: dict[str, int]) -> None:
        wanted = countdowns(timeouts, self.venue_name, self.config.get("symbols", ()))
        if wanted != self.countdowns:
            self.countdowns = wanted
            self._arm_cancel_after()

    def _arm_cancel_after(self) -> None:
        """Send what the switches want now, unless a request is on its way
        (its answer sends again what changed meanwhile)."""
        wanted = dict(self.countdowns)
        disarm = [s for s in self.countdowns_armed if s not in wanted]
        if not self.client.cancel_after or (not wanted and not disarm) or self.pacer.active(_CANCEL_AFTER):
            return

        def done(_result: Any, error: BaseException | None) -> None:
            if error is None:
                self.countdowns_armed = wanted
            else:  # tried again by the timer
                log.warning("venue %s: arming the exchange's cancel-all-after: %s", self.venue_name, error)
            if self.countdowns != wanted:
                self._arm_cancel_after()
        self._request("cancel_after", _CANCEL_AFTER, partial(self.client.arm_cancel_after, wanted, disarm),
                      done)

    def _cancel_after_tick(self) -> None:
        """A countdown is refreshed at a third of its timeout, so the exchange
        fires only if the engine is gone; whatever failed is sent again."""
        if self.countdowns != self.countdowns_armed or (self.countdowns and self.client.cancel_after
                                                        == "countdown"):
            self._arm_cancel_after()
        self.after(max(0.5, min(self.countdowns.values()) / 3000) if self.countdowns else 1.0, _CANCEL_AFTER)

    # --- requests -----------------------------------------------------------------------

    def _request(self, kind: str, key: str, make: Any, on_done: Any, *, delay: float = 0.0) -> None:
        """Queued; it starts at the end of this batch (`end_of_batch` → `_pump`),
        after the batch's writes are synced."""
        self.pacer.put(Request(kind, key, make, tags={"on_done": on_done}), time.monotonic(), delay=delay)

    def _pump(self) -> None:
        starting = []
        for request in self.pacer.due(time.monotonic()):
            if request.kind == "create":
                # The trading state decides at the moment of sending, not when queued.
                order = self.journal.get(request.key)
                gated = self._gated(order, None) if order is not None else None
                if gated is None:
                    self.pacer.done(request.key)
                    continue
                request.start = partial(self.client.create, **_venue_spec(gated))
            starting.append(request)
        self.sync_stores()  # a gate may have journaled what it changed: durable before it is sent
        for request in starting:
            if request.kind == "create":
                trace("venue_send", coid=request.key)
            self.calls["requests"] += 1
            request.tags["sent_at"] = time.monotonic()
            self.aio.submit(request.start(), partial(self._finished, request))

    def _finished(self, request: Request, result: Any, error: BaseException | None) -> None:
        self.pacer.done(request.key)
        self.round_trip.observe(time.monotonic() - request.tags["sent_at"])
        if error is None:
            self.connection = "ready"
            self._venue_ok()
        elif not (isinstance(error, VenueRejected) and request.kind in ("create", "cancel", "resize")):
            # A refused order is the order's fault, not the venue's: it does not count.
            self._note_error(f"{request.kind} {request.key}: {error}")
        request.tags["on_done"](result, error)

    def _note_error(self, text: str) -> None:
        self.calls["errors"] += 1
        self.last_error = text[:300]
        self.consecutive_errors += 1
        if self.markets_ready:
            self.connection = "degraded"
        self.tell("risk", VenueHealth(self.venue_name, self.consecutive_errors, self.last_error))

    def _delay(self, attempt: int) -> float:
        first, most = self.backoff_s
        return backoff_s(attempt, first_s=first, max_s=most)

    def _backoff(self, coid: str) -> float:
        attempt = self.attempts.get(coid, 0)
        self.attempts[coid] = attempt + 1
        return self._delay(attempt)

    def _wait(self, coid: str, command: str, reply_to: str | None) -> None:
        if reply_to is not None:
            waiting = self.waiters.setdefault((coid, command), [])
            if len(waiting) < _MAX_WAITERS:
                waiting.append(reply_to)

    def _answer(self, coid: str, command: str, answer: Any) -> None:
        for reply_to in self.waiters.pop((coid, command), []):
            self.reply_now(reply_to, answer)

    # --- create, look up, resolve -----------------------------------------------------------

    def _send_to_venue(self, order: Order, reply_to: str | None) -> None:
        self._wait(order.client_order_id, "CONFIRM", reply_to)
        self._create(order)

    def _create(self, order: Order, delay: float = 0.0) -> None:
        coid = order.client_order_id
        if order.order_type == "stop" and self.emulate_stops:
            self._arm(order)
            return
        make = partial(self.client.create, **_venue_spec(order))  # the paper venue's order spec
        self.counts["submitted"] += 1
        self._request("create", coid, make, partial(self._on_created, coid), delay=delay)

    def _on_created(self, coid: str, result: Any, error: BaseException | None) -> None:
        order = self.journal.get(coid)
        if order is None:
            return
        if error is None:
            self.attempts.pop(coid, None)
            self._acknowledged(order, result)
        elif isinstance(error, DuplicateClientOrderId):
            self._lookup(order)  # placed before: learn its state
        elif isinstance(error, VenueRejected):
            self._reject(order, error.reason, "VENUE_REJECTED")
        else:
            self._lookup(order, delay=self._backoff(coid))  # unknown outcome: look before any resend

    def _resolve(self, order: Order, reply_to: str | None) -> None:
        """A repeated CONFIRM, or a restart, for an order sent but never answered."""
        self._wait(order.client_order_id, "CONFIRM", reply_to)
        if not self.pacer.active(order.client_order_id):
            self._lookup(order)

    def _resolve_unanswered(self) -> None:
        if not self.markets_ready or self.states is None or self.resolving is not None:
            return
        unanswered = [
            o for o in self.journal.live.values() if o.stage == "CONFIRMED" and o.status == "SUBMITTED"
        ]
        self.resolving = {o.client_order_id for o in unanswered}
        for order in unanswered:
            log.warning("venue %s: resolving %s after a restart", self.venue_name, order.client_order_id)
            self._lookup(order)
        self._refit_exits()
        self._restart_algos()

    def _lookup(self, order: Order, delay: float = 0.0) -> None:
        coid = order.client_order_id
        make = partial(self.client.fetch_by_client_id, client_order_id=coid, symbol=order.symbol,
                       conditional=self._held_by_venue(order))
        self._request("lookup", coid, make, partial(self._on_looked_up, coid), delay=delay)

    def _on_looked_up(self, coid: str, found: Any, error: BaseException | None) -> None:
        order = self.journal.get(coid)
        if order is None:
            return
        if error is not None:
            self._lookup(order, delay=self._backoff(coid))  # no answer: never resend blind
            return
        if found is not None:
            self._acknowledged(order, found)
        elif order.status != "SUBMITTED":
            log.warning("venue %s: %s (%s) is not found at the venue", self.venue_name, coid, order.status)
        elif order.leg != "entry" or (now_ms() - order.confirmed_at <= order.ttl_ms
                                       and not self._halted(order)):
            self._create(order, delay=self._backoff(coid))  # surely not placed: send it, same id
        else:
            reason = (
                "not sent: trading was halted before it could be sent"
                if self._halted(order)
                else "not sent: the venue could not be reached within the order's ttl"
            )
            self._reject(order, reason, "VENUE_UNAVAILABLE")
        self._resolved(coid)

    def _resolved(self, coid: str) -> None:
        if self.resolving:
            self.resolving.discard(coid)

    def _acknowledged(self, order: Order, info: dict[str, Any]) -> None:
        """The venue has the order: answer the CONFIRMs waiting, then report."""
        changes = self._venue_update(order, info)
        self._answer(
            order.client_order_id,
            "CONFIRM",
            OrderAccepted(order.signal_id, order.client_order_id, order.exchange),
        )
        self._after_changes(changes)
        self._poll_trades(order.symbol)

    def _sending(self, coid: str) -> bool:
        return self.pacer.active(coid)

    def _gate_queued(self) -> None:
        # A halt refuses (or holds) what waits for a token at once, instead of
        # when its turn comes; `_pump` gates whatever is still queued again.
        for request in [r for r in self.pacer.queue if r.kind == "create"]:
            order = self.journal.get(request.key)
            if order is not None and self._gate_of(order).verdict != "send" \
                    and self.pacer.drop("create", request.key):
                self._gated(order, None)

    def _reject_unsent(self, order: Order, reply_to: str | None, code: str, reason: str) -> None:
        self._wait(order.client_order_id, "CONFIRM", reply_to)
        self._reject(order, reason, code)

    def _reject(self, order: Order, reason: str, code: str) -> None:
        self.counts["rejected"] += 1
        self.attempts.pop(order.client_order_id, None)
        self._resolved(order.client_order_id)
        rejected = with_status(order, "REJECTED", now_ms(), reason=reason)
        self._commit([rejected], [(rejected, None)])
        refused = CommandRefused(order.signal_id, "CONFIRM", code, reason)
        self._answer(order.client_order_id, "CONFIRM", refused)
        self._report(rejected, None)

    def _venue_update(self, order: Order, info: dict[str, Any]) -> list[tuple[Order, dict[str, Any] | None]]:
        """A venue order's state onto ours. Fill statuses come only with their
        trades (the position actor needs each fill); a final status reached
        through fills we have not seen waits for them (`held`)."""
        status = order_status(info)
        filled = info.get("filled") or ZERO
        behind = filled > order.filled_qty
        current = "ACCEPTED" if order.status == "SUBMITTED" else order.status
        if status in FINAL_STATUSES and behind:
            self.held[order.client_order_id] = (status, filled)
            status = current
        elif status not in FINAL_STATUSES or status == "FILLED":
            status = current
        if behind:
            self._poll_trades(order.symbol)
        order_id = str(info.get("id") or order.order_id)
        if status == order.status and order_id == order.order_id:
            return []
        reason = str((info.get("info") or {}).get("rejectReason") or "") if status == "REJECTED" else ""
        return self._apply([VenueEvent(_venue_order(order, status, order_id, reason))])

    # --- cancel -------------------------------------------------------------------------

    # --- stops the engine emulates ------------------------------------------------------------

    def _arm(self, order: Order) -> None:
        if time.monotonic() - self.quoted.get(order.symbol, -_QUOTE_FRESH_S) > _QUOTE_FRESH_S:
            log.warning("venue %s: a stop on %s is emulated but no market data for it has arrived in %ds: "
                        "it cannot fire until some does", self.venue_name, order.symbol, _QUOTE_FRESH_S)
        armed = arm_emulated_stop(order, now_ms())
        self.armed[order.client_order_id] = order.symbol
        self._commit([armed], [(armed, None)])
        self._report(armed, None)

    def _on_price(self, msg: PriceUpdate) -> None:
        self.quoted[msg.symbol] = time.monotonic()
        for coid in [c for c, symbol in self.armed.items() if symbol == msg.symbol]:
            order = self.journal.get(coid)
            if order is None or order.final or not order.order_id.startswith(EMULATED):
                self.armed.pop(coid, None)
            elif stop_triggered(order, msg.last):
                self.armed.pop(coid)
                fired = fire_emulated_stop(order, msg.last, now_ms())
                log.warning("venue %s: %s", self.venue_name, fired.reason)
                self._commit([fired], [(fired, None)])
                self._report(fired, None)
                self._create(fired)

    def _amends(self, order: Order) -> bool:
        """An emulated stop is resized here; Bybit amends any order (ccxt
        `edit_order`); on the others (Binance's algo stops included) an order
        is not changed in place."""
        emulated = order.order_type == "stop" and self.emulate_stops
        return emulated or order.client_order_id in self.armed or self.client.amends

    def _held_symbols(self) -> set[str]:
        return set(self.client.markets)  # positions are the exchange's: ask about each market

    def _close_positions(self, symbols: list[str], answer: Any) -> None:
        """Each symbol's position asked of the exchange, then closed; `answer`
        once every one is (a symbol whose position could not be read is named
        with the error: nothing was sent for it). On spot the wallet's coins
        are not all the engine's: what is sold is the engine's own quantity
        (its position actor's), at most what the wallet holds."""
        spot = self.config.get("market", "linear") == "spot"
        symbols = [s for s in symbols if s in self.client.markets
                   and (not spot or s in self.config.get("symbols", ()))]
        closing: dict[str, dict[str, Any]] = {}
        left = set(symbols)

        def close(symbol: str, qty: Decimal | None, problem: str) -> None:
            left.discard(symbol)
            if problem:
                closing[symbol] = {"error": problem}
            elif qty is not None and (sent := self._close(symbol, qty)) is not None:
                closing[symbol] = sent
            if not left:
                answer(closing)

        def read(symbol: str, ours: Decimal | None, position: Any, error: BaseException | None) -> None:
            if error is not None:
                close(symbol, None, f"position not read: {str(error)[:200]}")
            elif ours is None:  # a derivative position is the account's: all of it is closed
                close(symbol, position[0], "")
            else:
                close(symbol, max(min(ours, position[0]), ZERO), "")

        def held(symbol: str, ours: Decimal | None) -> None:
            if ours is None:
                close(symbol, None, f"position:{symbol} did not say what the engine holds")
            elif ours <= 0:
                close(symbol, None, "")
            else:
                self._request("state", f"flatten:{symbol}", partial(self.client.position, symbol),
                              partial(read, symbol, ours))

        if not symbols:
            answer(closing)
        for symbol in symbols:
            if spot:
                self._ask_position(symbol, partial(held, symbol))
            else:
                self._request("state", f"flatten:{symbol}", partial(self.client.position, symbol),
                              partial(read, symbol, None))

    def _held_by_venue(self, order: Order) -> bool:
        """A stop the venue holds until it fires (not one the engine emulates)."""
        return order.order_type == "stop" and not self.emulate_stops

    def _resize_at_venue(self, order: Order, quantity: Decimal) -> None:
        coid = order.client_order_id
        if coid in self.armed:  # held here: resized in the journal
            self._resized(order, quantity)
            return
        if self.pacer.queued("resize", coid):
            self.pacer.drop("resize", coid)
        make = partial(self.client.resize, client_order_id=coid, symbol=order.symbol, side=order.side,
                       quantity=quantity, order_type=order.order_type, price=order.price,
                       trigger_price=order.trigger_price)
        self._request("resize", coid, make, partial(self._on_resized, coid, quantity))

    def _on_resized(self, coid: str, quantity: Decimal, _result: Any, error: BaseException | None) -> None:
        order = self.journal.get(coid)
        if order is None or order.final:
            return
        if error is not None:  # the exit keeps its size; the next change of the bracket fits it again
            log.warning("venue %s: exit %s not resized: %s", self.venue_name, coid, error)
            return
        self._resized(order, quantity)

    def _cancel_at_venue(self, order: Order, reply_to: str | None) -> None:
        coid = order.client_order_id
        if self.armed.pop(coid, None) is not None:  # held here: nothing at the venue to cancel
            canceled = with_status(order, "CANCELED", now_ms(), reason="emulated stop canceled")
            self._commit([canceled], [(canceled, None)])
            self._report(canceled, None)
            if reply_to is not None:
                self.reply_now(reply_to, OrderCanceled(order.signal_id, coid))
            return
        self._wait(coid, "CANCEL", reply_to)
        if not self.pacer.queued("cancel", coid):
            make = partial(self.client.cancel, client_order_id=coid, symbol=order.symbol,
                           conditional=self._held_by_venue(order))
            self._request("cancel", coid, make, partial(self._on_canceled, coid))

    def _on_canceled(self, coid: str, result: Any, error: BaseException | None) -> None:
        order = self.journal.get(coid)
        if order is None:
            return
        if error is None:
            self._answer(coid, "CANCEL", OrderCanceled(order.signal_id, coid))
            self._lookup(order)  # its final state, with what filled before the cancel
        elif isinstance(error, VenueRejected):  # not open at the venue any more
            self._answer(
                coid, "CANCEL", CommandRefused(order.signal_id, "CANCEL", "ALREADY_FINAL", error.reason)
            )
            self._lookup(order)
        else:  # unknown: a cancel is safe to repeat; the waiting CANCELs keep waiting
            make = partial(self.client.cancel, client_order_id=coid, symbol=order.symbol,
                           conditional=self._held_by_venue(order))
            self._request("cancel", coid, make, partial(self._on_canceled, coid), delay=self._backoff(coid))

    def _flat(self, exit_order: Order) -> bool:
        """The signal's exits have filled as much as its entry did (the account's
        position is not ours alone on a real exchange)."""
        entry = self._entry_of(exit_order.signal_id)
        if entry is None:
            return False
        return sum((o.filled_qty for o in self._exits_of(entry)), ZERO) >= entry.filled_qty

    def _cancel_exits(self, signal_id: str | None, symbol: str) -> None:
        for order in [o for o in self.journal.live.values() if o.leg != "entry" and o.symbol == symbol
                      and signal_id in (None, o.signal_id)]:
            self._cancel_at_venue(order, None)

    # --- polling: fills and order states ----------------------------------------------------

    def _schedule_polls(self) -> None:
        if not self.markets_ready:
            return
        self._polls += 1
        for symbol in sorted(
            {
                o.symbol
                for o in self.journal.live.values()
                if o.stage == "CONFIRMED" and (o.status != "SUBMITTED" or o.order_id)
            }
        ):
            self._poll_trades(symbol)
            if self._polls % 3 == 0:
                self._poll_open(symbol)

    def _poll_trades(self, symbol: str, then: Any = None) -> None:
        """Our trades on `symbol` page by page, in one request chain; `then` gets
        every trade seen once the last page is in (or the error that ended it)."""
        if self.pacer.queued("poll", f"trades:{symbol}") and then is None:
            return
        live = [o.confirmed_at for o in self.journal.live.values() if o.symbol == symbol and o.confirmed_at]
        since = (min(live) if live else now_ms()) - _TRADES_MARGIN_MS
        self._trades_page(symbol, since, [None], [], then)

    def _trades_page(self, symbol: str, since: int, pages: list[Any], seen: list[Any], then: Any) -> None:
        make = partial(self.client.my_trades, symbol, since, pages.pop())
        done = partial(self._on_trades, symbol, since, pages, seen, then)
        self._request("poll", f"trades:{symbol}", make, done)

    def _on_trades(
        self, symbol: str, since: int, pages: list[Any], seen: list[Any], then: Any, result: Any, error: Any
    ) -> None:
        if error is None:
            trades, more = result
            self._apply_trades(symbol, trades)
            seen.extend(trades)
            pages.extend(more)
            if pages and len(seen) < _MAX_TRADES_PER_SCAN:
                self._trades_page(symbol, since, pages, seen, then)
                return
            if pages:
                log.warning("venue %s: %s: stopped after %d trades", self.venue_name, symbol, len(seen))
        if then is not None:
            then(seen, error)

    def _apply_trades(self, symbol: str, trades: list[dict[str, Any]]) -> None:
        by_id = {o.order_id: o for o in self.journal.live.values() if o.symbol == symbol and o.order_id}
        by_coid = {o.client_order_id: o for o in self.journal.live.values() if o.symbol == symbol}
        events: list[VenueEvent] = []
        current: dict[str, Order] = {}
        for trade in trades:
            order_id, coid = str(trade.get("order") or ""), str(trade.get("clientOrderId") or "")
            order = by_id.get(order_id) or by_coid.get(coid)
            if order is None:
                known = (order_id and self.journal.by_order_id(order_id)) or (coid and self.journal.get(coid))
                if not known and (self._maybe_unanswered(symbol, trade) or self._fired_stops_unknown(symbol)):
                    continue  # maybe ours, not known by its order id yet: applied once it is
                if not known:  # a known order's trades were applied before it became final
                    self._venue_data_problem(symbol, f"trade:{trade.get('id')}",
                                             f"trade {trade.get('id')} of an order the engine does not know "
                                             f"({order_id or coid or 'no order id'})")
                continue
            order = current.get(order.client_order_id, order)
            fill = _fill_of(trade)
            if isinstance(fill, str):
                self._venue_data_problem(symbol, f"trade:{trade.get('id')}", fill, order)
                continue
            applied = apply_fill(order, fill)
            if applied is order:
                continue  # a trade id applied before
            status = applied.status
            held = self.held.get(order.client_order_id)
            if held is not None and applied.filled_qty >= held[1]:
                status = self.held.pop(order.client_order_id)[0]  # its fills are all here now
            events.append(VenueEvent(_venue_order(applied, status, order.order_id), applied.fills[-1]))
            current[order.client_order_id] = applied
        if events:
            self._after_changes(self._apply(events))

    def _unanswered_creates(self, symbol: str) -> list[Order]:
        """Orders on `symbol` sent whose create the venue has not answered yet:
        their trades carry an order id not known here until it does."""
        return [o for o in self.journal.live.values() if o.symbol == symbol and o.stage == "CONFIRMED"
                and o.status == "SUBMITTED" and not o.order_id and o.client_order_id not in self.armed]

    def _maybe_unanswered(self, symbol: str, trade: dict[str, Any]) -> bool:
        """`trade` may belong to an order whose create is unanswered: one is, and
        the trade is not older than the oldest of them (a second allowed for
        the venue's clock; an older unknown trade cannot be theirs)."""
        unanswered = self._unanswered_creates(symbol)
        return bool(unanswered) and int(trade.get("timestamp") or 0) >= min(
            o.confirmed_at for o in unanswered) - 1000

    def _unmapped_fills(self, symbol: str, trades: list[dict[str, Any]]) -> list[FillInFlight]:
        """The trades of a state question's poll that are not mapped to an order
        here while creates are unanswered: maybe ours (the venue's figures may
        count them, the shadow does not yet), so part of the cut."""
        fills = []
        for trade in trades:
            if not self._maybe_unanswered(symbol, trade):
                continue
            order_id, coid = str(trade.get("order") or ""), str(trade.get("clientOrderId") or "")
            if (order_id and self.journal.by_order_id(order_id)) or (coid and self.journal.get(coid)):
                continue
            fill = _fill_of(trade)
            if isinstance(fill, Fill) and trade.get("side") in ("buy", "sell"):
                signed = fill.qty if trade["side"] == "buy" else -fill.qty
                fills.append(FillInFlight(fill.trade_id, signed, fill.ts, counted=False))
        return fills

    def _fired_stops_unknown(self, symbol: str) -> bool:
        """A trade of an order nobody here placed, while stops the venue holds
        are live on `symbol`: one of them may have fired as a new order (a
        Binance algo order's `actualOrderId`). Looks them up (the order they
        became is learned, and the trade is applied at the next poll); False
        when there is none."""
        stops = [o for o in self.journal.live.values() if o.symbol == symbol and self._held_by_venue(o)
                 and o.status not in ("", "SUBMITTED")]
        for stop in stops:
            if not self.pacer.active(stop.client_order_id):
                self._lookup(stop)
        return bool(stops)

    def _poll_open(self, symbol: str) -> None:
        key = f"orders:{symbol}"
        if not self.pacer.queued("poll", key):
            self._request(
                "poll", key, partial(self.client.open_orders, symbol), partial(self._on_open_orders, symbol)
            )

    def _on_open_orders(self, symbol: str, open_orders: Any, error: BaseException | None) -> None:
        if error is not None:
            return
        at_venue = {str(o.get("clientOrderId") or ""): o for o in open_orders}
        for order in [o for o in self.journal.live.values() if o.symbol == symbol and o.stage == "CONFIRMED"
                      and o.client_order_id not in self.armed and o.algo is None]:
            info = at_venue.get(order.client_order_id)
            if info is not None:
                self._after_changes(self._venue_update(order, info))
            elif not self.pacer.active(order.client_order_id):
                self._lookup(order)  # gone from the open orders: learn how it ended

    # --- the private stream: trades and order updates as they happen ------------------------

    def _follow_stream(self) -> None:
        """Start following the venue's private stream (once). Polling goes on
        beside it: it catches what the stream missed while it was down."""
        if self.stream == "off" or self.streaming:
            return
        self.streaming = True
        for kind in ("trades", "orders"):
            watch = partial(self.client.watch, kind)
            self.aio.submit(_follow(watch, partial(self.aio.post, self._on_stream, kind), self.backoff_s))

    def _on_stream(self, kind: str, batch: Any, error: BaseException | None) -> None:
        if error is not None:
            if self.stream != "down":
                log.warning("venue %s: private stream down: %s", self.venue_name, error)
            self.stream, self.stream_error = "down", str(error)[:300]
            return
        self.stream, self.stream_error = "up", ""
        for symbol, items in batch.items():
            if kind == "trades":
                self._apply_trades(symbol, items)
            else:
                self._streamed_orders(items)

    def _streamed_orders(self, items: list[dict[str, Any]]) -> None:
        for info in items:
            order = self.journal.get(str(info.get("clientOrderId") or ""))
            if order is not None and order.stage == "CONFIRMED" and order.status not in FINAL_STATUSES:
                self._after_changes(self._venue_update(order, info))

    # --- reconciliation and audits -----------------------------------------------------------

    def _venue_state(self, symbol: str, asker: Any) -> None:
        """Position, then open orders, then our trades since (applied as any
        poll's). The answer names the fills on their way to the position
        actor: those known before the position was asked for (it counts
        them) and those learned while asking (it may or may not)."""
        if not self.markets_ready or symbol not in self.client.markets:
            self.tell(asker, VenueState(self.venue_name, symbol, ZERO, ZERO, {}, now_ms(), available=False))
            return
        key = f"state:{symbol}"
        if self.pacer.queued("state", key):
            return  # its position is not read yet: that question answers this one too
        learned = self._start_learning(symbol)
        self._request(
            "state",
            key,
            partial(self.client.position, symbol),
            partial(self._on_state_position, symbol, asker, learned),
        )

    def _on_state_position(
        self,
        symbol: str,
        asker: Any,
        learned: list[ExecutionReport],
        position: Any,
        error: BaseException | None,
    ) -> None:
        if error is not None:
            self._stop_learning(symbol, learned)
            return  # unreachable: no answer, the position actor asks again
        self._request(
            "state",
            f"state-orders:{symbol}",  # a question asked from now on reads the position again
            partial(self.client.open_orders, symbol),
            partial(self._on_state_orders, symbol, asker, learned, position),
        )

    def _on_state_orders(
        self,
        symbol: str,
        asker: Any,
        learned: list[ExecutionReport],
        position: tuple[Decimal, Decimal],
        open_orders: Any,
        error: BaseException | None,
    ) -> None:
        if error is not None:
            self._stop_learning(symbol, learned)
            return
        orders = {
            str(o.get("clientOrderId") or o.get("id")): {
                "side": o.get("side"),
                "remaining": o.get("remaining") or ZERO,
                "price": o.get("price"),
                "status": order_status(o),
            }
            for o in open_orders
        }
        for coid in [c for c, s in self.armed.items() if s == symbol]:  # held by the engine, as if there
            armed = self.journal.get(coid)
            if armed is not None:
                orders[coid] = {"side": armed.side, "remaining": armed.remaining, "price": None,
                                "status": armed.status}

        def answer(trades: Any, trades_error: BaseException | None) -> None:
            self._stop_learning(symbol, learned)
            if trades_error is None:
                qty, avg = position
                # Orders whose create is unanswered may have traded under an order id
                # not known yet: their trades are part of the cut, and they are in flight.
                unmapped = self._unmapped_fills(symbol, trades)
                pending = {o.client_order_id for o in self._unanswered_creates(symbol)}
                self.tell(asker, self._state_of(symbol, qty, avg, orders, learned, unmapped, pending))

        self._poll_trades(symbol, then=answer)

    def _audit(self, asker: Any) -> None:
        journal = {
            o.client_order_id: {
                "signal_id": o.signal_id,
                "symbol": o.symbol,
                "stage": o.stage,
                "status": o.status,
                "order_id": o.order_id,
                "filled_qty": o.filled_qty,
                "quantity": o.quantity,
                "leg": o.leg,
            }
            for o in (Order.from_json(v) for _k, v in self.store.items(b"o:"))
        }
        self.tell(asker, VenueOrders({}, journal, {}), via="thespian")


async def _follow(watch: Any, deliver: Any, backoff: tuple[float, float]) -> None:
    """In the loop thread: await `watch()` for ever, handing each batch (or
    error) to `deliver`; after an error, wait (exponential backoff) and go on —
    ccxt reconnects and authenticates again on the next watch."""
    failures = 0
    while True:
        try:
            batch = await watch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            deliver(None, exc)
            first, most = backoff
            await asyncio.sleep(backoff_s(failures, first_s=first, max_s=most))
            failures += 1
            continue
        failures = 0
        deliver(batch, None)


def _venue_order(order: Order, status: str, order_id: str, reason: str = "") -> VenueOrder:
    return VenueOrder(
        client_order_id=order.client_order_id,
        order_id=order_id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        order_type=order.order_type,
        price=order.price,
        trigger_price=order.trigger_price,
        time_in_force=order.time_in_force,
        reduce_only=order.reduce_only,
        status=status,
        filled_qty=order.filled_qty,
        avg_price=order.avg_price,
        reason=reason,
    )


def _fill_of(trade: dict[str, Any]) -> Fill | str:
    """The fill of a ccxt trade (sizes and prices already Decimal), or why it
    cannot be one (bad venue data)."""
    if trade.get("id") is None:
        return "a trade with no id"
    for key in ("amount", "price"):
        if trade.get(key) is None:
            return f"trade {trade['id']}: no {key}"
    fee = trade.get("fee") or {}
    fill = Fill(
        trade_id=str(trade["id"]),
        qty=trade["amount"],
        price=trade["price"],
        fee=fee.get("cost") or ZERO,
        liquidity=str(trade.get("takerOrMaker") or "taker"),
        ts=int(trade.get("timestamp") or now_ms()),
    )
    return fill_problem(fill) or fill
