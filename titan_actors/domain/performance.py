"""Execution and performance figures, pure: what the HTTP API's read
endpoints report (shared/spec/http-api.md) from the ledger's rows.

- `slippage_bps(side, arrival, fill)`: signed, positive = worse than the
  market price when the PREPARE arrived (a buy that paid more, a sell that
  got less), in basis points of the arrival price.
- `summary(closed, trades, equity=...)`: over closed positions (`net_pnl`,
  after fees, decides winning and losing) and filled orders (latency and
  slippage). Sharpe is the mean over the standard deviation (n - 1) of the
  PnL summed per UTC day, for the days that closed a position, times
  sqrt(365) (crypto trades every day); None with fewer than two such days
  or no spread. Drawdown is the largest fall of cumulative net PnL from
  its running peak, in money and, with `equity`, in percent of equity plus
  that peak.

Money stays exact (Decimal); ratios are rounded to 10 decimal places.

Failure: a row with a missing figure is left out of the figure it lacks,
never a crash.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from titan_actors.domain.money import ZERO

__all__ = ["slippage_bps", "summary"]

_PLACES = Decimal("1e-10")
_DAY_MS = 86_400_000


def _ratio(value: Decimal) -> Decimal:
    return value.quantize(_PLACES).normalize() if value else ZERO


def slippage_bps(side: str, arrival: Decimal | None, fill: Decimal | None) -> Decimal | None:
    if not arrival or not fill:
        return None
    worse = fill - arrival if side == "buy" else arrival - fill
    return _ratio(worse / arrival * 10_000)


def _mean(values: list[Decimal]) -> Decimal | None:
    return _ratio(sum(values, ZERO) / len(values)) if values else None


def _sharpe(closed: list[Mapping[str, Any]]) -> Decimal | None:
    by_day: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for row in closed:
        by_day[int(row["closed_at"]) // _DAY_MS] += row["net_pnl"]
    days = list(by_day.values())
    if len(days) < 2:
        return None
    mean = sum(days, ZERO) / len(days)
    spread = (sum(((d - mean) ** 2 for d in days), ZERO) / (len(days) - 1)).sqrt()
    return _ratio(mean / spread * Decimal(365).sqrt()) if spread else None


def _drawdown(closed: list[Mapping[str, Any]], equity: Decimal) -> tuple[Decimal, Decimal | None]:
    peak = value = worst = ZERO
    worst_pct: Decimal | None = ZERO if equity else None
    for row in sorted(closed, key=lambda r: r["closed_at"]):
        value += row["net_pnl"]
        peak = max(peak, value)
        worst = max(worst, peak - value)
        if equity and equity + peak > 0:
            worst_pct = max(worst_pct or ZERO, (peak - value) / (equity + peak) * 100)
    return worst, None if worst_pct is None else _ratio(worst_pct)


def _metrics(closed: list[Mapping[str, Any]], trades: list[Mapping[str, Any]],
             equity: Decimal) -> dict[str, Any]:
    wins = [r["net_pnl"] for r in closed if r["net_pnl"] > 0]
    losses = [r["net_pnl"] for r in closed if r["net_pnl"] < 0]
    avg_win, avg_loss = _mean(wins), _mean(losses)
    drawdown, drawdown_pct = _drawdown(closed, equity)
    latencies = [Decimal(t["execution_latency_ms"]) for t in trades
                 if t.get("execution_latency_ms") is not None]
    slippages = [t["slippage_bps"] for t in trades if t.get("slippage_bps") is not None]
    return {
        "total_trades": len(closed), "winning_trades": len(wins), "losing_trades": len(losses),
        "win_rate": _ratio(Decimal(len(wins)) / len(closed)) if closed else None,
        "total_pnl": sum((r["net_pnl"] for r in closed), ZERO),
        "avg_win": avg_win, "avg_loss": avg_loss,
        "payoff_ratio": _ratio(avg_win / -avg_loss) if avg_win is not None and avg_loss else None,
        "sharpe_ratio": _sharpe(closed),
        "max_drawdown": drawdown, "max_drawdown_pct": drawdown_pct,
        "avg_execution_latency_ms": _mean(latencies), "avg_slippage_bps": _mean(slippages),
    }


def summary(closed: Iterable[Mapping[str, Any]], trades: Iterable[Mapping[str, Any]], *,
            equity: Decimal = ZERO) -> dict[str, Any]:
    """`metrics` over everything given and `by_symbol` the same per symbol."""
    closed, trades = list(closed), list(trades)
    symbols = sorted({r["symbol"] for r in closed} | {t["symbol"] for t in trades})
    return {
        "metrics": _metrics(closed, trades, equity),
        "by_symbol": {s: _metrics([r for r in closed if r["symbol"] == s],
                                  [t for t in trades if t["symbol"] == s], equity) for s in symbols},
    }
