"""`titan report`: execution analytics from the engine's ledger, as an HTML
page with plots (PNG, matplotlib) and a text summary.

What it shows, over the period asked (`--since`, `--symbol`): slippage in
basis points of every filled order and its average per venue and per leg,
the same by algo, the distribution of fill latency (CONFIRM to first fill), PnL of closed
positions over time (cumulative, net of fees), and the performance summary
of the HTTP API's `/api/performance/summary` — the same numbers, from the
same ledger (docs/protocols.md defines each).

Failure: a ledger that does not answer raises the CLI's error; an empty
period writes a report that says so (no plot is drawn from nothing).
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["write_report"]

Ask = Callable[[str, dict[str, Any]], dict[str, Any]]
_PAGE = 1000
_TRADE_COLUMNS = ["ts", "symbol", "venue", "side", "leg", "quantity", "arrival_price", "fill_price",
                  "slippage_bps", "execution_latency_ms", "fees", "signal_id"]
_CLOSE_COLUMNS = ["closed_at", "symbol", "venue", "side", "quantity", "avg_entry", "close_price", "net_pnl",
                  "close_reason"]


def _all(ask: Ask, path: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = ask(path, {"limit": _PAGE, "offset": len(items)})
        items += page[name]
        if len(items) >= page["total"] or not page[name]:
            return items


def _mean(values: list[Decimal]) -> Decimal | None:
    return sum(values, Decimal(0)) / len(values) if values else None


def _number(value: Any) -> Decimal:
    return Decimal(str(value))


def write_report(ask: Ask, out: Path) -> dict[str, Any]:
    """Fetch, plot, write `out/report.html` and its PNGs; the summary
    (`text` for people, the rest for `--json`)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    out.mkdir(parents=True, exist_ok=True)
    trades = _all(ask, "/api/trades", "trades")
    closed = _all(ask, "/api/positions/history", "positions")
    performance = ask("/api/performance/summary", {})
    slipped = [t for t in trades if t.get("slippage_bps") is not None]
    by_venue: dict[str, list[Decimal]] = defaultdict(list)
    by_leg: dict[str, list[Decimal]] = defaultdict(list)
    for t in slipped:
        by_venue[t["venue"]].append(_number(t["slippage_bps"]))
        by_leg[t.get("leg", "entry")].append(_number(t["slippage_bps"]))
    latencies = [t["execution_latency_ms"] for t in trades if t.get("execution_latency_ms") is not None]
    images: list[tuple[str, str]] = []

    def figure(name: str, title: str, draw: Callable[[Any], None]) -> None:
        fig, axes = pyplot.subplots(figsize=(8, 3.5))
        draw(axes)
        axes.set_title(title)
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        pyplot.close(fig)
        images.append((name, title))

    if slipped:
        ordered = sorted(slipped, key=lambda t: t["ts"])
        figure("slippage.png", "Slippage per filled order (bps, positive = worse)", lambda ax: (
            ax.bar(range(len(ordered)), [float(t["slippage_bps"]) for t in ordered],
                   color=["#c0392b" if float(t["slippage_bps"]) > 0 else "#27ae60" for t in ordered]),
            ax.set_xlabel("order (oldest first)"), ax.axhline(0, color="black", linewidth=0.5)))
        figure("slippage_by_venue.png", "Average slippage by venue and by leg (bps)", lambda ax: ax.bar(
            [f"venue {v}" for v in by_venue] + [f"leg {leg}" for leg in by_leg],
            [float(_mean(s) or 0) for s in (*by_venue.values(), *by_leg.values())]))
    if latencies:
        figure("latency.png", "Fill latency, CONFIRM to first fill (ms)", lambda ax: (
            ax.hist(latencies, bins=min(30, max(5, len(latencies) // 2))), ax.set_xlabel("ms")))
    if closed:
        ordered_closes = sorted(closed, key=lambda c: c["closed_at"])
        cumulative, total = [], Decimal(0)
        for c in ordered_closes:
            total += _number(c["net_pnl"])
            cumulative.append(float(total))
        figure("pnl.png", "Cumulative net PnL of closed positions", lambda ax: (
            ax.plot(range(1, len(cumulative) + 1), cumulative, marker="o"), ax.set_xlabel("close #"),
            ax.axhline(0, color="black", linewidth=0.5)))

    algos = _algo_figures(ask, trades, figure)
    by_algo: dict[str, list[Decimal]] = defaultdict(list)
    kinds = {signal: a["type"] for signal, a in algos.items()}
    for t in slipped:
        by_algo[kinds.get(t.get("parent", ""), "none")].append(_number(t["slippage_bps"]))
    if slipped:
        figure("slippage_by_algo.png", "Average slippage by algo (bps; none: orders sent as they are)",
               lambda ax: ax.bar(list(by_algo), [float(_mean(s) or 0) for s in by_algo.values()]))
    metrics = performance["metrics"]
    summary = {
        "period": performance["period"], "filled_orders": len(trades), "closed_positions": len(closed),
        "avg_slippage_bps": _mean([_number(t["slippage_bps"]) for t in slipped]),
        "avg_slippage_bps_by_venue": {v: _mean(s) for v, s in by_venue.items()},
        "avg_slippage_bps_by_algo": {a: _mean(s) for a, s in by_algo.items()},
        "avg_fill_latency_ms": _mean([Decimal(x) for x in latencies]),
        "total_pnl": metrics["total_pnl"], "win_rate": metrics["win_rate"],
        "max_drawdown": metrics["max_drawdown"], "algos": algos, "images": [name for name, _ in images],
        "html": str(out / "report.html"),
    }
    lines = [f"filled orders: {len(trades)}   closed positions: {len(closed)}",
             f"average slippage: {_fmt(summary['avg_slippage_bps'])} bps   "
             f"average fill latency: {_fmt(summary['avg_fill_latency_ms'])} ms",
             *(f"  venue {v}: {_fmt(m)} bps" for v, m in summary["avg_slippage_bps_by_venue"].items()),
             f"total net PnL: {_fmt(metrics['total_pnl'])}   win rate: {_fmt(metrics['win_rate'])}   "
             f"max drawdown: {_fmt(metrics['max_drawdown'])}",
             *(f"  {a['type']} {signal}: {a['children']} children filled {_fmt(a['filled'])} of "
               f"{_fmt(a['quantity'])}" for signal, a in algos.items()),
             f"report: {summary['html']}"]
    summary["text"] = "\n".join(lines)
    (out / "report.html").write_text(_html(summary, metrics, images, trades, closed))
    return summary


def _algo_figures(ask: Ask, trades: list[dict[str, Any]], figure: Callable[..., None]) -> dict[str, Any]:
    """Per TWAP or VWAP parent of the period: its children's fills against
    its schedule (cumulative quantity over time) and the market price at
    each child's arrival; and per algo parent, what its children filled."""
    parents = [o for o in _all(ask, "/api/orders", "orders") if o.get("algo")]
    out: dict[str, Any] = {}
    for parent in parents:
        kids = sorted((t for t in trades if t.get("parent") == parent["signal_id"]), key=lambda t: t["ts"])
        spec = parent["algo"]
        out[parent["signal_id"]] = {"type": spec["type"], "children": len(kids),
                                    "quantity": _number(parent["quantity"]),
                                    "filled": sum((_number(k["quantity"]) for k in kids), Decimal(0))}
        if spec["type"] not in ("TWAP", "VWAP") or not kids or not parent.get("confirmed_at"):
            continue
        start = _ms(parent["confirmed_at"])
        duration = float(spec["duration_s"])
        times = [(_ms(k["ts"]) - start) / 1000 for k in kids]
        filled, total = [], Decimal(0)
        for k in kids:
            total += _number(k["quantity"])
            filled.append(float(total))
        quantity = float(parent["quantity"])

        def draw(ax: Any, times: list[float] = times, filled: list[float] = filled, kids: list[Any] = kids,
                 duration: float = duration, quantity: float = quantity) -> None:
            ax.step(times, filled, where="post", label="filled", marker="o")
            ax.plot([0, duration], [quantity / max(1, len(kids)), quantity], linestyle="--", label="schedule")
            ax.set_xlabel("seconds since CONFIRM")
            ax.set_ylabel("cumulative quantity")
            prices = [float(k["arrival_price"]) for k in kids if k.get("arrival_price") is not None]
            if prices:
                twin = ax.twinx()
                twin.plot(times[:len(prices)], prices, color="grey", alpha=0.6, label="market (arrival)")
                twin.set_ylabel("market price")
            ax.legend(loc="upper left")
        name = f"algo_{parent['signal_id']}.png".replace("/", "_")
        figure(name, f"{spec['type']} {parent['signal_id']}: child fills against the schedule", draw)
    return out


def _ms(text: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value):.4f}".rstrip("0").rstrip(".") if not isinstance(value, int) else str(value)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(summary: dict[str, Any], metrics: dict[str, Any], images: list[tuple[str, str]],
          trades: list[dict[str, Any]], closed: list[dict[str, Any]]) -> str:
    figures = "".join(f'<figure><img src="{name}" alt="{html.escape(title)}">'
                      f"<figcaption>{html.escape(title)}</figcaption></figure>" for name, title in images)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Titan execution report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}</style></head><body>"
        "<h1>Titan execution report</h1>"
        f"<pre>{html.escape(summary['text'])}</pre>"
        f"<h2>Performance</h2>{_table([{k: _fmt(v) for k, v in metrics.items()}], list(metrics))}"
        f"{figures or '<p>No fills in this period.</p>'}"
        f"<h2>Filled orders</h2>{_table(trades, _TRADE_COLUMNS)}"
        f"<h2>Closed positions</h2>{_table(closed, _CLOSE_COLUMNS)}"
        "</body></html>")
