"""The ledger actor: the engine's record of orders, trades and positions,
kept for the HTTP API's read endpoints (shared/spec/http-api.md).

**Fed by the NATS bridge.** Every event the bridge stores (the durable end
of every actor's outbox) is also handed to the ledger as a re-driven
delivery (`LedgerEvents` in the bridge's `Deliveries`), acknowledged once
the ledger has written what it learned; so the ledger misses nothing when
either is killed, and sees each event at least once. It keeps, in its own
store:

- `o:<client order id>`: the order as its newest report says (an older
  report, re-delivered, does not move it back: each row keeps the `seq` of
  its source), with the arrival price, when it was confirmed, and its first
  and last fill.
- `x:<signal id>`: the fields a signal carried that the engine does not use
  (webhook), shared by every order of the signal.
- `p:<symbol>:<venue>`: the position as its newest truth event says, and
  when it opened.
- `c:<closed_at>:<event id>`: closed positions (`execution.trade.closed`).
- `r:<ts>:<signal id>`: the first report of each signal that carried a
  `regime_vector`.

Final orders, closed positions and snapshots are retired after `[engine]
retention_days`.

**Queries** (`LedgerQuery`, from the HTTP actor) are answered from that
store with `CommandReply`; no other actor's store is read.

Failure: an event it cannot read is counted (`bad_events`) and skipped; a
query with a bad filter is answered `{"error": "INVALID", ...}`. A crash
loses nothing: unacknowledged deliveries come again.
"""

from __future__ import annotations

from typing import Any

import orjson

from titan_actors.domain.money import ZERO, json_default, loads_exact, to_decimal
from titan_actors.domain.orders import FINAL_STATUSES
from titan_actors.domain.performance import slippage_bps, summary
from titan_actors.messages import CommandReply, LedgerEvents, LedgerQuery
from titan_actors.runtime.actor import TitanActor, count_boot
from titan_actors.runtime.clock import iso, parse_iso
from titan_actors.wire import subjects
from titan_actors.wire.events import Event

__all__ = ["Ledger"]

_REPORT = subjects.report("")
_TRUTH = subjects.truth("")
#: Spec names of a close's reason; an order of a signal that closed it is "manual".
_CLOSE_REASONS = {"signal": "manual"}


class Ledger(TitanActor):
    """See the module docstring."""

    def on_start(self) -> None:
        self.store = self.open_store("ledger", durable=False)
        self.boots = count_boot(self.store)
        self.retention = self.open_retention(self.store)
        self.equity = to_decimal(self.config.get("equity", 0), field="equity")
        self.counts = {"events": 0, "bad_events": 0, "queries": 0}
        self.batch = {}  # what the events of the batch being learnt wrote, read back before the store

    def status_detail(self) -> dict[str, Any]:
        return {"boots": self.boots, **self.counts}

    def handle(self, msg: Any, sender: Any) -> None:
        match msg:
            case LedgerEvents():
                # One write for the batch; each event reads what the ones before it wrote.
                self.batch: dict[bytes, bytes] = {}
                for event in msg.events:
                    self.counts["events"] += 1
                    try:
                        self.batch.update(self._learn(event))
                    except (KeyError, TypeError, ValueError, ArithmeticError):
                        self.counts["bad_events"] += 1
                if self.batch:
                    self.store.write_batch(self.batch.items())
                self.batch = {}
            case LedgerQuery():
                self.counts["queries"] += 1
                try:
                    answer = self._query(msg.path, msg.params)
                except ValueError as exc:
                    answer = {"error": "INVALID", "reason": str(exc)}
                self.tell(sender, CommandReply(msg.corr, answer))
            case _:
                super().handle(msg, sender)

    # --- learning ---------------------------------------------------------------------

    def _get(self, key: bytes) -> dict[str, Any] | None:
        raw = self.batch.get(key) or self.store.get(key)
        return None if raw is None else loads_exact(raw)

    def _learn(self, event: Event) -> list[tuple[bytes, bytes]]:
        if event.subject.startswith(_REPORT):
            return self._order(event)
        if event.subject.startswith(_TRUTH):
            return self._position(event)
        if event.subject == subjects.TRADE_CLOSED:
            key = b"c:%016d:%s" % (int(event.data["closed_at"]), event.event_id.encode())
            return [(key, _dumps(event.data)), self.retention.index(int(event.data["closed_at"]), [key])]
        return []

    def _order(self, event: Event) -> list[tuple[bytes, bytes]]:
        data = event.data
        key = b"o:" + data["client_order_id"].encode()
        row = self._get(key) or {"first_fill_ts": None, "last_fill_ts": None, "seen_at": event.ts}
        writes: list[tuple[bytes, bytes]] = []
        extra = data.get("extra")
        if extra and self._get(b"x:" + data["signal_id"].encode()) is None:
            kept = b"x:" + data["signal_id"].encode()
            writes += [(kept, _dumps(extra)), self.retention.index(event.ts, [kept])]
            if "regime_vector" in extra:
                snap = b"r:%016d:%s" % (event.ts, data["signal_id"].encode())
                snapshot = {"ts": event.ts, "symbol": event.symbol, "signal_id": data["signal_id"],
                            "regime_vector": extra["regime_vector"]}
                writes += [(snap, _dumps(snapshot)), self.retention.index(event.ts, [snap])]
        fill = data.get("last_fill")
        if fill:
            at = int(fill.get("ts") or event.ts)
            row["first_fill_ts"] = min(row["first_fill_ts"] or at, at)
            row["last_fill_ts"] = max(row["last_fill_ts"] or at, at)
        if row.get("source") == event.source and event.seq <= row["seq"]:
            return [(key, _dumps(row)), *writes]  # an older report: only its fill times count
        row.update({k: v for k, v in data.items() if k not in ("last_fill", "extra")},
                   symbol=event.symbol, updated_at=event.ts, source=event.source, seq=event.seq)
        writes.append((key, _dumps(row)))
        if row["status"] in FINAL_STATUSES:
            writes.append(self.retention.index(event.ts, [key]))
        return writes

    def _position(self, event: Event) -> list[tuple[bytes, bytes]]:
        data = event.data
        key = f"p:{event.symbol}:{data['venue']}".encode()
        row = self._get(key) or {"opened_at": None, "seq": -1}
        if event.seq <= row["seq"]:
            return []
        qty = to_decimal(data["qty"])
        opened_at = row["opened_at"] if qty and row.get("qty") else (event.ts if qty else None)
        row.update(symbol=event.symbol, venue=data["venue"], qty=qty, avg_entry=data["avg_entry"],
                   unrealised_pnl=data.get("unrealised_pnl"), mark=data.get("mark"), opened_at=opened_at,
                   updated_at=event.ts, seq=event.seq)
        return [(key, _dumps(row))]

    # --- queries ----------------------------------------------------------------------

    def _query(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        start = parse_iso(params["start_date"]) if params.get("start_date") else None
        end = parse_iso(params["end_date"], end=True) if params.get("end_date") else None
        symbol = params.get("symbol")
        limit, offset = int(params.get("limit", 100)), int(params.get("offset", 0))

        def within(ms: int | None) -> bool:
            return ms is not None and (start is None or ms >= start) and (end is None or ms <= end)

        def page(name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
            return {name: items[offset:offset + limit], "total": len(items), "limit": limit, "offset": offset}

        match path:
            case "/api/trades":
                return page("trades", [t for t in self._trades(symbol) if within(t["_ts"])])
            case "/api/orders":
                wanted = params.get("status", "all")
                rows = [r for _k, r in self._rows(b"o:") if (symbol is None or r["symbol"] == symbol)
                        and (wanted == "all" or (r["status"] in FINAL_STATUSES) == (wanted == "final"))]
                rows.sort(key=lambda r: r["updated_at"], reverse=True)
                return page("orders", [_order_item(r) for r in rows])
            case "/api/positions/active":
                return self._active()
            case "/api/positions/history":
                rows = [r for r in self._closed(symbol) if within(r["closed_at"])]
                return page("positions", [_closed_item(r) for r in reversed(rows)])
            case "/api/performance/summary":
                closed = [r for r in self._closed(symbol) if within(r["closed_at"])]
                trades = [t for t in self._trades(symbol) if within(t["_ts"])]
                return {"period": {"start_date": iso(start), "end_date": iso(end)},
                        **summary(closed, trades, equity=self.equity)}
            case "/api/regime/snapshots":
                rows = [r for _k, r in self._rows(b"r:") if (symbol is None or r["symbol"] == symbol)
                        and within(r["ts"])]
                items = [{"ts": iso(r["ts"]), "symbol": r["symbol"], "signal_id": r["signal_id"],
                          **(r["regime_vector"] if isinstance(r["regime_vector"], dict)
                             else {"regime_vector": r["regime_vector"]})} for r in reversed(rows)]
                return page("snapshots", items)
        raise ValueError(f"path: no query {path}")

    def _rows(self, prefix: bytes) -> list[tuple[bytes, dict[str, Any]]]:
        return [(k, loads_exact(v)) for k, v in self.store.items(prefix)]

    def _closed(self, symbol: str | None) -> list[dict[str, Any]]:
        rows = [r for _k, r in self._rows(b"c:") if symbol is None or r["symbol"] == symbol]
        for row in rows:
            row["net_pnl"] = to_decimal(row["net_pnl"])
        return rows

    def _trades(self, symbol: str | None) -> list[dict[str, Any]]:
        """One per filled order (final, something filled), newest first."""
        trades = []
        for _key, row in self._rows(b"o:"):
            filled = to_decimal(row["filled_qty"])
            if row["status"] not in FINAL_STATUSES or not filled or (symbol and row["symbol"] != symbol):
                continue
            if row.get("algo"):
                continue  # an algo parent: its children are the trades
            extra = self._get(b"x:" + row["signal_id"].encode()) or {}
            arrival = to_decimal(row["arrival_price"]) if row.get("arrival_price") is not None else None
            fill = to_decimal(row["avg_price"])
            latency = row["first_fill_ts"] - row["confirmed_at"] \
                if row.get("first_fill_ts") and row.get("confirmed_at") else None
            ts = row.get("last_fill_ts") or row["updated_at"]
            trades.append({**extra, "signal_id": row["signal_id"], "client_order_id": row["client_order_id"],
                           "symbol": row["symbol"], "venue": row["exchange"], "side": row["side"],
                           "leg": row.get("leg", "entry"), "quantity": filled, "arrival_price": arrival,
                           "fill_price": fill, "slippage_bps": slippage_bps(row["side"], arrival, fill),
                           "fees": row["fees"], "execution_latency_ms": latency, "ts": iso(ts), "_ts": ts,
                           **({"parent": row["parent"]} if row.get("parent") else {})})
        trades.sort(key=lambda t: t["_ts"], reverse=True)
        return trades

    def _active(self) -> dict[str, Any]:
        exits: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _key, row in self._rows(b"o:"):
            if row["status"] not in FINAL_STATUSES and row.get("leg", "entry") not in ("entry", "flatten"):
                exits.setdefault((row["symbol"], row["exchange"]), []).append(row)
        positions, total = [], ZERO
        for _key, row in self._rows(b"p:"):
            qty = to_decimal(row["qty"])
            if not qty:
                continue
            unrealised = to_decimal(row["unrealised_pnl"]) if row.get("unrealised_pnl") is not None else ZERO
            total += unrealised
            legs = exits.get((row["symbol"], row["venue"]), [])
            positions.append({
                "symbol": row["symbol"], "venue": row["venue"], "side": "long" if qty > 0 else "short",
                "quantity": abs(qty), "avg_entry": row["avg_entry"],
                "stop_orders": [_exit_item(o) for o in legs if o["leg"] == "sl"],
                "take_profit_orders": [_exit_item(o) for o in legs if o["leg"].startswith("tp")],
                "unrealized_pnl": unrealised, "mark": row.get("mark"),
                "opened_at": iso(row["opened_at"]), "updated_at": iso(row["updated_at"])})
        return {"positions": positions, "total_unrealized_pnl": total}


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=json_default)


def _order_item(row: dict[str, Any]) -> dict[str, Any]:
    return {"signal_id": row["signal_id"], "client_order_id": row["client_order_id"],
            "order_id": row["order_id"], "symbol": row["symbol"], "venue": row["exchange"],
            "side": row["side"],
            "order_type": row["order_type"], "leg": row.get("leg", "entry"), "quantity": row["quantity"],
            "price": row.get("price"), "trigger_price": row.get("trigger_price"), "status": row["status"],
            "filled_qty": row["filled_qty"], "avg_price": row["avg_price"], "fees": row["fees"],
            "reason": row.get("reason") or None, "arrival_price": row.get("arrival_price"),
            "created_at": iso(row.get("seen_at")), "updated_at": iso(row["updated_at"]),
            "confirmed_at": iso(row.get("confirmed_at")), "algo": row.get("algo"),
            "parent": row.get("parent")}


def _exit_item(row: dict[str, Any]) -> dict[str, Any]:
    return {"client_order_id": row["client_order_id"], "leg": row["leg"], "status": row["status"],
            "quantity": row["quantity"], "price": row.get("price"), "trigger_price": row.get("trigger_price")}


def _closed_item(row: dict[str, Any]) -> dict[str, Any]:
    return {"symbol": row["symbol"], "venue": row["venue"], "side": row["side"], "quantity": row["size"],
            "avg_entry": row["entry_price"], "close_price": row["exit_price"],
            "realized_pnl": row["realised_pnl"], "fees": row["fees"], "net_pnl": row["net_pnl"],
            "opened_at": iso(row["opened_at"]), "closed_at": iso(row["closed_at"]),
            "close_reason": _CLOSE_REASONS.get(row["close_reason"], row["close_reason"]),
            "strategy_id": row.get("strategy_id"), "phase": row.get("phase")}

