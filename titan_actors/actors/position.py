"""The position actor: one per symbol, the engine's truth about what it holds.

Per venue it keeps the position (`domain/positions.py`: net quantity, entry,
realised PnL, fees), the open orders and which orders it has counted. Order
updates come from the venue adapters as re-driven deliveries (resent until
acknowledged, also across restarts of either side); each fill is applied
once, by venue trade id.

Reconciliation, at start and every `reconcile_interval_s`: the actor asks
each venue adapter for the venue's own figures (`VenueState`) and turns every
difference into an explicit event on `titan.evt.execution.drift.v1.<SYMBOL>`:
`OrderAdopted` (open at the venue, unknown here), `OrderClosedAtVenue` (open
here, not at the venue), `PositionDrift` (beyond the venue's
`reconcile_tolerance`), after which the venue's `reconcile_policy` applies:
`adopt` takes the venue's quantity and entry, `halt` halts the symbol at the
risk guard until an operator resumes. The comparison is made at a
consistent cut (`domain/reconciliation.py`): the adapter names the fills on
their way here, so a comparison can always be made while orders keep
filling, and a fill in flight is never drift. Until a venue is reconciled
after a start, the risk guard approves no order for this symbol there.

Every change is one atomic batch in `<data>/positions/<SYMBOL>`: the fill's
marker, the new state, and its events — `titan.evt.execution.truth.v1.<SYMBOL>`
with the position after the change, and `execution.trade.closed` when a
position went back to flat (entry, exit, size, PnL, fees, duration, strategy
and phase). A restarted actor reads that state back and is exactly where it
was. After every change a versioned `PositionSnapshot` goes to the risk
guard (state over deltas: a lost one is healed by the next, and one is sent
every 2 s anyway).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import OrderedDict
from decimal import Decimal
from typing import Any

import orjson

from titan_actors.domain.money import ZERO, json_default, loads_exact, to_decimal, to_decimal_or_none
from titan_actors.domain.orders import FINAL_STATUSES, close_reason
from titan_actors.domain.positions import ClosedTrade, Position, apply_fill, unrealised_pnl
from titan_actors.domain.reconciliation import reconcile
from titan_actors.messages import (
    CancelExits,
    ExecutionReport,
    PositionHeld,
    PositionQuery,
    PositionSnapshot,
    PriceUpdates,
    ReconcileNow,
    SetTradingState,
    SnapshotRequest,
    TradingStateSet,
    VenueState,
    VenueStateRequest,
)
from titan_actors.runtime import otel
from titan_actors.runtime.actor import TitanActor, count_boot
from titan_actors.wire import subjects

__all__ = ["PositionActor"]

# An order the venue no longer has (reconciliation) counts as final too.
_FINAL = FINAL_STATUSES | {"CLOSED_AT_VENUE"}
_RECONCILE = "position:reconcile"
_RETRY_S = 0.5
_AGAIN = "position:reconcile-again"
#: Drift that several cuts could explain is asked about again this soon,
#: this many times, before the nearest cut is taken.
_UNSURE_AGAIN_S = 0.15
_UNSURE_TRIES = 4
_SNAPSHOT_TICK = "position:snapshot"
_SNAPSHOT_EVERY_S = 2.0
_ACCOUNTED_KEEP = 5000
#: One key per accounted order (`acc:<coid>` → [seq, status]): a fill writes
#: one small key, not the whole list.
_ACCOUNTED = b"acc:"
#: A snapshot after a change names the orders accounted most recently; the
#: periodic one and the answer to `SnapshotRequest` name them all.
_RECENT_IN_SNAPSHOT = 64


def _position(raw: dict[str, Any]) -> Position:
    return Position(**{k: v if isinstance(v, int) and k in ("fills", "opened_at") else to_decimal(v, field=k)
                       for k, v in raw.items()})


def _open_order(raw: dict[str, Any]) -> dict[str, Any]:
    return {**raw, "remaining": to_decimal(raw["remaining"]), "price": to_decimal_or_none(raw.get("price"))}


def _today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


class PositionActor(TitanActor):
    needs = ("risk", "nats", "venue:")

    def on_start(self) -> None:
        self.symbol = self.config["symbol"]
        self.store = self.open_store(f"positions/{self.symbol}")
        # A fill's key guards against applying it twice; kept `[engine] retention_days`.
        self.retention = self.open_retention(self.store)
        self.boots = count_boot(self.store)
        self.open_outbox(self.store)
        raw = self.store.get(b"state")
        state = loads_exact(raw) if raw else {}
        self.version: int = state.get("version", 0)
        self.positions = {v: _position(p) for v, p in state.get("positions", {}).items()}
        self.open: dict[str, dict[str, dict[str, Any]]] = {
            v: {coid: _open_order(o) for coid, o in orders.items()}
            for v, orders in state.get("open", {}).items()}
        self.accounted: OrderedDict[str, str] = OrderedDict()
        self._accounted_dirty: dict[str, str | None] = {}  # to persist with the next batch (None: delete)
        self._batch: list[tuple[bytes, bytes]] = []  # the reports' writes, until end_of_batch
        self._changed: dict[str, str] = {}  # venue → the order whose updates await their PositionChanged
        self._batch_fills: set[bytes] = set()
        self.day: str = state.get("day", _today())
        self.realised_today: Decimal = to_decimal(state.get("realised_today", 0))
        self.tags: dict[str, list[Any]] = state.get("tags", {})
        # Spot: coins of the base asset the wallet held apart from the engine's
        # own trades, set at the first reconciliation (a wallet balance is all
        # coins, the shadow position only the engine's).
        self.wallet_base: dict[str, Decimal] = {
            v: to_decimal(q) for v, q in state.get("wallet_base", {}).items()}
        self._load_accounted(state.get("accounted"))
        self.mark: Decimal | None = None
        self.reports = 0
        self.venue_settings: dict[str, dict[str, Any]] = self.config.get("venues", {})
        self.interval_s = float(self.config.get("reconcile_interval_s", 30.0))
        self.reconciled: dict[str, dict[str, Any]] = {}  # since this start: fail closed until then
        self._reported_drift: dict[str, Decimal] = {}
        self._unsure: dict[str, int] = {}  # venue → comparisons in a row that could not size a drift
        self._snapshot_due = False
        self.after(_SNAPSHOT_EVERY_S, _SNAPSHOT_TICK)
        self.after(0.0, _RECONCILE)

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ExecutionReport):
            self._on_report(msg)
        elif isinstance(msg, PriceUpdates):
            self.mark = msg.quotes[-1].last
        elif isinstance(msg, SnapshotRequest):
            self.tell(sender, self.snapshot(full=True))
        elif isinstance(msg, VenueState):
            self._reconcile(msg)
        elif isinstance(msg, TradingStateSet):
            pass  # the risk guard confirmed a halt we asked for
        elif isinstance(msg, PositionQuery):
            held = self.positions.get(msg.venue)
            self.tell(sender, PositionHeld(self.symbol, msg.venue, held.qty if held else ZERO, msg.corr))
        elif isinstance(msg, ReconcileNow):
            if msg.venue in self.venue_settings:
                # The adapter could not apply what its venue said: compare now.
                self.tell(f"venue:{msg.venue}", VenueStateRequest(self.symbol))
        else:
            super().handle(msg, sender)

    def on_wakeup(self, payload: Any) -> None:
        if payload == _SNAPSHOT_TICK:
            self.tell("risk", self.snapshot(full=True))
            self.after(_SNAPSHOT_EVERY_S, _SNAPSHOT_TICK)
        elif isinstance(payload, tuple) and payload[0] == _AGAIN:
            self.tell(f"venue:{payload[1]}", VenueStateRequest(self.symbol))
        elif payload == _RECONCILE:
            for venue in self.venue_settings:
                self.tell(f"venue:{venue}", VenueStateRequest(self.symbol))
            # Not yet reconciled, or the venue was not reachable: ask again soon
            # (the risk guard refuses orders for the symbol until then).
            pending = any(self.reconciled.get(v, {}).get("result", "venue unavailable") == "venue unavailable"
                          for v in self.venue_settings)
            self.after(_RETRY_S if pending else self.interval_s, _RECONCILE)

    # --- reconciliation ---------------------------------------------------------------

    def _reconcile(self, state: VenueState) -> None:
        venue = state.venue
        if not state.available:
            self.reconciled[venue] = {"at": state.ts, "result": "venue unavailable", "corrections": 0}
            self.tell("risk", self.snapshot())
            return
        settings = self.venue_settings.get(venue, {"policy": "adopt", "tolerance": 0})
        shadow = self.open.setdefault(venue, {})
        position = self.positions.get(venue, Position())
        outcome = reconcile(
            venue=venue, position=position, shadow_open=shadow,
            ended={c for c in state.open_orders if self.accounted.get(c) in _FINAL},
            venue_qty=state.qty, venue_avg=state.avg_price, venue_open=state.open_orders,
            policy=settings["policy"],
            tolerance=to_decimal(settings["tolerance"], field="reconcile_tolerance"),
            spot=bool(settings.get("spot")), wallet_base=self.wallet_base.get(venue),
            reported=self._reported_drift.get(venue), in_flight=state.in_flight,
            applied={f.trade_id for f in state.in_flight if self._applied(venue, f.trade_id)},
            orders_in_flight=state.orders_in_flight, settle=self._unsure.get(venue, 0) >= _UNSURE_TRIES)
        if outcome.result == "unsure":
            self._unsure[venue] = self._unsure.get(venue, 0) + 1
            self.after(_UNSURE_AGAIN_S, (_AGAIN, venue))
            return
        self._unsure.pop(venue, None)
        for coid, order in outcome.adopted.items():
            shadow[coid] = order
            self._account(coid, order["status"])
        for coid in outcome.closed:
            shadow.pop(coid, None)
            self._account(coid, "CLOSED_AT_VENUE")
        if outcome.wallet_base is not None:
            self.wallet_base[venue] = outcome.wallet_base
        if outcome.drift_key is None:
            self._reported_drift.pop(venue, None)
        else:
            self._reported_drift[venue] = outcome.drift_key
        if outcome.position is not position:
            self.positions[venue] = outcome.position
        assert self.outbox is not None
        self.version += 1
        writes: list[tuple[bytes, bytes]] = []
        for kind, data in outcome.corrections:
            writes += self.outbox.emit(subjects.drift(self.symbol), kind, self.symbol, data)
        writes += self.outbox.emit(subjects.truth(self.symbol), "PositionReconciled", self.symbol,
                                   self._truth(venue, cause="reconciliation"))
        self._commit(writes)
        self.reconciled[venue] = {"at": state.ts, "result": outcome.result,
                                  "corrections": len(outcome.corrections)}
        if outcome.position is not position and outcome.position.flat and not position.flat:
            self.tell(f"venue:{venue}", CancelExits(self.symbol))  # adopted flat: its exits protect nothing
        if outcome.halt:
            self.tell("risk", SetTradingState("HALTED", f"symbol:{self.symbol}", outcome.halt,
                                              "reconciliation"))
        self.tell("risk", self.snapshot())

    def _applied(self, venue: str, trade_id: str) -> bool:
        key = f"fill:{venue}:{trade_id}".encode()
        return key in self._batch_fills or self.store.get(key) is not None

    # --- applying order updates ---------------------------------------------------------

    def _on_report(self, report: ExecutionReport) -> None:
        self.reports += 1
        venue, coid = report.exchange, report.client_order_id
        fill = report.last_fill
        fill_key = f"fill:{venue}:{fill['trade_id']}".encode() if fill else None
        new_fill = fill is not None and not self._applied(venue, str(fill["trade_id"]))
        changed_orders = self._track_order(report)
        if not new_fill and not changed_orders:
            return  # a repeat (re-driven delivery): nothing to do
        assert self.outbox is not None
        if self._changed.get(venue, coid) != coid:
            self._position_changed(venue)  # another order's updates: the position after them is a fact
        writes: list[tuple[bytes, bytes]] = []
        closed: ClosedTrade | None = None
        if new_fill:
            assert fill is not None and fill_key is not None
            span = otel.start("position apply fill", report.trace, titan__signal_id=report.signal_id,
                              titan__client_order_id=coid, titan__venue=venue,
                              titan__trade_id=str(fill["trade_id"]))
            self._roll_day()
            before = self.positions.get(venue, Position())
            after, closed = apply_fill(before, report.side, fill["qty"], fill["price"], fill["fee"],
                                       fill["ts"])
            self.positions[venue] = after
            self.realised_today += after.realised_pnl - before.realised_pnl
            if report.strategy_id is not None or report.phase is not None:
                self.tags[venue] = [report.strategy_id, report.phase]
            writes += [(fill_key, orjson.dumps(fill, default=json_default)),
                       self.retention.index(int(fill["ts"]), [fill_key])]
            self._batch_fills.add(fill_key)
            otel.end(span, titan__position_qty=str(after.qty))
        self.version += 1
        self._changed[venue] = coid  # one PositionChanged for this order's updates in this batch
        if closed is not None:
            writes += self.outbox.emit(subjects.TRADE_CLOSED, "TradeClosed", self.symbol,
                                       self._closed_trade(venue, closed, report))
        self._batch += writes  # written by end_of_batch, before the reports are acknowledged
        self._snapshot_due = True

    def _position_changed(self, venue: str) -> None:
        assert self.outbox is not None
        cause = self._changed.pop(venue)
        self._batch += self.outbox.emit(subjects.truth(self.symbol), "PositionChanged", self.symbol,
                                        self._truth(venue, cause=cause))

    def end_of_batch(self) -> None:
        # The reports that arrived together are written in one batch, are one
        # truth event per order (the position after its updates: submitted,
        # accepted and filled together make one), and move the risk guard's
        # view once (state over deltas).
        for venue in list(self._changed):
            self._position_changed(venue)
        if self._batch:
            self._commit([])
        if self._snapshot_due:
            self._snapshot_due = False
            self.tell("risk", self.snapshot(), urgent=False)

    def _commit(self, writes: list[tuple[bytes, bytes]]) -> None:
        """One batch: the reports' writes not yet written, `writes`, the state,
        and the accounted orders changed since the last."""
        writes = self._batch + writes
        self._batch = []
        self._batch_fills.clear()
        deletes = []
        for coid, status in self._accounted_dirty.items():
            if status is None:
                deletes.append(_ACCOUNTED + coid.encode())
            else:
                self._accounted_seq += 1
                writes.append((_ACCOUNTED + coid.encode(), orjson.dumps([self._accounted_seq, status])))
        self._accounted_dirty.clear()
        writes.append((b"state", self._state()))
        self.store.write_batch(writes, deletes)

    def _load_accounted(self, legacy: list[list[str]] | None) -> None:
        stored = self.store.items(_ACCOUNTED)
        rows = sorted((orjson.loads(v), k[len(_ACCOUNTED):].decode()) for k, v in stored)
        self.accounted.update((coid, status) for (_seq, status), coid in rows)
        self._accounted_seq = rows[-1][0][0] if rows else 0
        if legacy:  # a store from before per-order keys kept the whole list in the state
            for coid, status in legacy:
                self._account(coid, status)
            self._commit([])

    def _account(self, coid: str, status: str) -> None:
        """`coid` is counted with `status` (newest last; the oldest beyond
        `_ACCOUNTED_KEEP` are forgotten); persisted by the next `_commit`."""
        self.accounted[coid] = status
        self.accounted.move_to_end(coid)
        self._accounted_dirty.pop(coid, None)
        self._accounted_dirty[coid] = status
        while len(self.accounted) > _ACCOUNTED_KEEP:
            old, _status = self.accounted.popitem(last=False)
            self._accounted_dirty.pop(old, None)
            self._accounted_dirty[old] = None

    def _track_order(self, report: ExecutionReport) -> bool:
        """Open orders per venue; a final status is terminal (a late, older
        update cannot reopen an order)."""
        venue, coid = report.exchange, report.client_order_id
        if self.accounted.get(coid) in _FINAL:
            return False
        open_orders = self.open.setdefault(venue, {})
        if report.status in _FINAL:
            open_orders.pop(coid, None)
        else:
            remaining = max(report.quantity - report.filled_qty, ZERO)
            open_orders[coid] = {"side": report.side, "remaining": remaining, "price": report.price,
                                 "status": report.status}
        changed = self.accounted.get(coid) != report.status
        if changed:
            self._account(coid, report.status)
        return changed

    def _roll_day(self) -> None:
        today = _today()
        if today != self.day:
            self.day, self.realised_today = today, ZERO

    # --- outputs --------------------------------------------------------------------------

    def _state(self) -> bytes:
        return orjson.dumps({
            "version": self.version, "positions": self.positions,  # orjson writes dataclasses itself
            "open": self.open, "day": self.day,
            "realised_today": self.realised_today, "tags": self.tags, "wallet_base": self.wallet_base,
        }, default=json_default)

    def _venue_view(self, venue: str) -> dict[str, Any]:
        p = self.positions.get(venue, Position())
        open_orders = self.open.get(venue, {})
        return {
            "qty": p.qty, "avg_entry": p.avg_entry, "realised_pnl": p.realised_pnl, "fees": p.fees,
            "unrealised_pnl": unrealised_pnl(p, self.mark), "fills": p.fills,
            "open_orders": len(open_orders),
            "open_buy": sum((o["remaining"] for o in open_orders.values() if o["side"] == "buy"), ZERO),
            "open_sell": sum((o["remaining"] for o in open_orders.values() if o["side"] == "sell"), ZERO),
        }

    def _truth(self, venue: str, cause: str) -> dict[str, Any]:
        return {"venue": venue, "version": self.version, "cause": cause, "mark": self.mark,
                **self._venue_view(venue), "realised_today": self.realised_today}

    def _closed_trade(self, venue: str, trade: ClosedTrade, report: ExecutionReport) -> dict[str, Any]:
        strategy, phase = self.tags.get(venue, [report.strategy_id, report.phase])
        return {
            "symbol": self.symbol, "venue": venue, "side": trade.side, "size": trade.size,
            "entry_price": trade.entry_price, "exit_price": trade.exit_price,
            "realised_pnl": trade.realised_pnl, "fees": trade.fees, "net_pnl": trade.net_pnl,
            "opened_at": trade.opened_at, "closed_at": trade.closed_at, "duration_ms": trade.duration_ms,
            "strategy_id": strategy, "phase": phase, "close_reason": close_reason(report.leg),
        }

    def snapshot(self, *, full: bool = False) -> PositionSnapshot:
        """The view for the risk guard. `full` names every accounted order;
        otherwise the most recent (a lost snapshot's are named by the next
        full one, at most `_SNAPSHOT_EVERY_S` later: its reservations stay
        counted meanwhile, failing closed)."""
        venues = set(self.positions) | set(self.open)
        recent = itertools.islice(reversed(self.accounted), _RECENT_IN_SNAPSHOT)
        accounted = tuple(self.accounted) if full else tuple(recent)[::-1]
        return PositionSnapshot(
            symbol=self.symbol, version=self.version,
            venues={v: self._venue_view(v) for v in sorted(venues)},
            accounted=accounted, realised_today=self.realised_today, day=self.day,
            reconciled={v: self._reconciled(v) for v in self.venue_settings},
            unavailable=tuple(v for v, r in self.reconciled.items() if r["result"] == "venue unavailable"),
        )

    def _reconciled(self, venue: str) -> bool:
        result = self.reconciled.get(venue)
        return result is not None and result["result"] != "venue unavailable"

    def status_detail(self) -> dict[str, Any]:
        venues = {v: self._venue_view(v) for v in sorted(set(self.positions) | set(self.open))}
        return {"boots": self.boots, "symbol": self.symbol, "version": self.version, "venues": venues,
                "fills": sum(p.fills for p in self.positions.values()), "reports": self.reports,
                "realised_today": self.realised_today, "mark": self.mark, "wallet_base": self.wallet_base,
                "net": {v: p.qty for v, p in self.positions.items()}, "accounted": len(self.accounted),
                "reconciled": {v: self.reconciled.get(v) for v in self.venue_settings}}
