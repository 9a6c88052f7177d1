"""Positions, pure: net quantity, average entry, realised and unrealised PnL,
fees, and the trade closed when a position returns to flat.

A fill that reduces a position realises `closed_qty * (price - entry)` (sign
by side); one that crosses zero closes the old side and opens the rest at
its price. Fees accumulate separately; `realised_pnl` is before fees.
Every function returns a new value. Quantities are exact (`Decimal`): a
position is flat when its fills sum to zero.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from titan_actors.domain.money import ZERO

__all__ = ["ClosedTrade", "Position", "apply_fill", "unrealised_pnl"]


@dataclass(frozen=True, slots=True)
class Position:
    qty: Decimal = ZERO  # signed: > 0 long, < 0 short
    avg_entry: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    fills: int = 0
    opened_at: int = 0  # ms, when the current non-flat position opened
    # The round trip in progress, for the closed-trade report.
    trade_entry_qty: Decimal = ZERO
    trade_entry_notional: Decimal = ZERO
    trade_exit_qty: Decimal = ZERO
    trade_exit_notional: Decimal = ZERO
    trade_realised: Decimal = ZERO
    trade_fees: Decimal = ZERO

    @property
    def flat(self) -> bool:
        return not self.qty

    @property
    def side(self) -> str:
        return "flat" if self.flat else ("long" if self.qty > 0 else "short")


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    side: str  # long | short
    size: Decimal  # the quantity entered in this round trip
    entry_price: Decimal
    exit_price: Decimal
    realised_pnl: Decimal
    fees: Decimal
    opened_at: int
    closed_at: int

    @property
    def net_pnl(self) -> Decimal:
        return self.realised_pnl - self.fees

    @property
    def duration_ms(self) -> int:
        return self.closed_at - self.opened_at


def unrealised_pnl(position: Position, mark: Decimal | None) -> Decimal:
    if mark is None or position.flat:
        return ZERO
    return position.qty * (mark - position.avg_entry)


def apply_fill(position: Position, side: str, qty: Decimal, price: Decimal, fee: Decimal,
               ts: int) -> tuple[Position, ClosedTrade | None]:
    """The position after a fill, and the trade it closed (back to flat) if any.
    A flip closes the trade of the old side and starts one for the new side."""
    signed = qty if side == "buy" else -qty
    p = replace(position, fees=position.fees + fee, fills=position.fills + 1)
    if p.flat or (p.qty > 0) == (signed > 0):
        return _open_more(p, signed, price, fee, ts), None
    closing = min(abs(p.qty), qty)
    direction = 1 if p.qty > 0 else -1
    realised = closing * (price - p.avg_entry) * direction
    share = fee * closing / qty
    p = replace(p, qty=p.qty + direction * -closing, realised_pnl=p.realised_pnl + realised,
                trade_exit_qty=p.trade_exit_qty + closing,
                trade_exit_notional=p.trade_exit_notional + closing * price,
                trade_realised=p.trade_realised + realised, trade_fees=p.trade_fees + share)
    closed = None
    if not p.qty:
        closed = ClosedTrade(
            side="long" if direction > 0 else "short", size=p.trade_entry_qty,
            entry_price=p.trade_entry_notional / p.trade_entry_qty if p.trade_entry_qty else ZERO,
            exit_price=p.trade_exit_notional / p.trade_exit_qty if p.trade_exit_qty else ZERO,
            realised_pnl=p.trade_realised, fees=p.trade_fees, opened_at=p.opened_at, closed_at=ts)
        p = replace(p, qty=ZERO, avg_entry=ZERO, opened_at=0, trade_entry_qty=ZERO, trade_entry_notional=ZERO,
                    trade_exit_qty=ZERO, trade_exit_notional=ZERO, trade_realised=ZERO, trade_fees=ZERO)
    rest = qty - closing
    if rest > 0:
        p = _open_more(p, -direction * rest, price, fee - share, ts)
    return p, closed


def _open_more(p: Position, signed: Decimal, price: Decimal, fee: Decimal, ts: int) -> Position:
    size = abs(signed)
    total = abs(p.qty) + size
    avg = (abs(p.qty) * p.avg_entry + size * price) / total
    return replace(p, qty=p.qty + signed, avg_entry=avg, opened_at=p.opened_at or ts,
                   trade_entry_qty=p.trade_entry_qty + size,
                   trade_entry_notional=p.trade_entry_notional + size * price,
                   trade_fees=p.trade_fees + fee)
