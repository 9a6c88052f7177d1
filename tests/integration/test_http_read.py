"""The HTTP API's read endpoints after a scripted run on the paper venue:
every figure checked against a hand computation from the prices and fees
the run was given (shared/spec/http-api.md, "Read endpoints")."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats

from tests.integration.test_http_api import base, call, hook, token
from tests.support.engine import FAST_SUPERVISION, RunningEngine, place, titan_cmd, wait_for
from titan_actors.domain.ids import client_order_id
from titan_actors.wire import subjects

CONFIG = FAST_SUPERVISION + """
[sizing]
equity = 10000

[venues.paper]
exchange = "paper"
taker_fee_bps = 10.0
symbols = ["BTCUSDT", "ETHUSDT"]
"""

FEE = Decimal("0.001")
PLACES = Decimal("1e-10")


def quote(engine: RunningEngine, bid: int, ask: int) -> None:
    """A ticker on NATS, as a market-data feed sends it; back once the risk
    guard (arrival prices) and the paper venue (fills) both have it."""
    async def publish() -> None:
        nc = await nats.connect(engine.nats_url)
        await nc.publish(f"{subjects.MARKET_TICKER}.BTCUSDT", json.dumps(
            {"symbol": "BTCUSDT", "bid": bid, "ask": ask, "last": (bid + ask) / 2,
             "ts": time.time_ns() // 1_000_000}).encode())
        await nc.flush()
        await nc.close()

    asyncio.run(publish())
    wait_for(lambda: engine.actor("risk")["detail"]["prices"].get("BTCUSDT", {}).get("last")
             == (bid + ask) / 2, 10, 0.05, "the quote at the risk guard")
    engine.control({"cmd": "price", "symbol": "BTCUSDT", "bid": bid, "ask": ask, "last": (bid + ask) / 2})


def read(engine: RunningEngine, path: str) -> dict[str, Any]:
    status, body, _ = call(base(engine) + path, headers={"Authorization": f"Bearer {token(engine, 'api')}"})
    assert status == 200, body
    return body


def ratio(value: Decimal) -> Decimal:
    return value.quantize(PLACES).normalize()


def test_the_read_endpoints_report_the_runs_fills_closes_and_performance_exactly(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, CONFIG).start()
    try:
        assert call(base(engine) + "/api/trades")[0] == 401
        with engine.client() as client:
            quote(engine, 59990, 60010)
            place(client, "rd-1", "buy", 0.1)  # 0.1 at 60010
            hook(engine, {"type": "PREPARE", "signal_id": "rd-w", "symbol": "BTCUSDT", "side": "buy",
                          "quantity": 0.01, "entry_zone": [50000], "regime_vector": {"trend": 0.5}})
            hook(engine, {"type": "CONFIRM", "signal_id": "rd-w"})  # rests far below the market
            quote(engine, 60990, 61010)
            place(client, "rd-2", "sell", 0.1)  # closes at 60990: a win
            quote(engine, 59990, 60010)
            place(client, "rd-3", "sell", 0.2)  # 0.2 short at 59990
            quote(engine, 60490, 60510)
            place(client, "rd-4", "buy", 0.2)  # closes at 60510: a loss
            place(client, "rd-5", "buy", 0.05, stop_loss=59000.0, take_profits=[62000.0])  # stays open
        wait_for(lambda: read(engine, "/api/positions/history")["total"] == 2, 10, 0.1, "two closes")
        wait_for(lambda: read(engine, "/api/trades")["total"] == 5, 10, 0.1, "five filled orders")

        # Hand computation: buys fill at the ask, sells at the bid, 10 bps taker fee.
        fills = {"rd-1": ("buy", "0.1", 60010, 60000), "rd-2": ("sell", "0.1", 60990, 61000),
                 "rd-3": ("sell", "0.2", 59990, 60000), "rd-4": ("buy", "0.2", 60510, 60500),
                 "rd-5": ("buy", "0.05", 60510, 60500)}
        trades = {t["signal_id"]: t for t in read(engine, "/api/trades")["trades"]}
        for signal, (side, qty, price, mid) in fills.items():
            t = trades[signal]
            worse = price - mid if side == "buy" else mid - price
            assert (t["side"], Decimal(str(t["quantity"])), t["fill_price"], t["arrival_price"]) == (
                side, Decimal(qty), price, mid), t
            assert Decimal(str(t["fees"])) == Decimal(qty) * price * FEE
            assert Decimal(str(t["slippage_bps"])) == ratio(Decimal(worse) / mid * 10_000)
            assert t["execution_latency_ms"] >= 0 and t["client_order_id"] == client_order_id(signal)
        win = Decimal("0.1") * (60990 - 60010) - Decimal("0.1") * (60010 + 60990) * FEE
        loss = Decimal("0.2") * (59990 - 60510) - Decimal("0.2") * (59990 + 60510) * FEE
        history = read(engine, "/api/positions/history")["positions"]
        assert [(Decimal(str(p["net_pnl"])), p["side"], p["close_reason"]) for p in history] == [
            (loss, "short", "manual"), (win, "long", "manual")]
        assert history[0]["close_price"] == 60510 and history[0]["avg_entry"] == 59990
        assert read(engine, "/api/positions/history?symbol=ETHUSDT")["total"] == 0

        active = read(engine, "/api/positions/active")
        (position,) = active["positions"]
        detail = engine.actor("position:BTCUSDT")["detail"]
        assert (position["side"], position["quantity"], position["avg_entry"]) == ("long", 0.05, 60510)
        assert position["quantity"] == detail["net"]["paper"]
        stop = wait_for(lambda: read(engine, "/api/positions/active")["positions"][0]["stop_orders"], 10, 0.1,
                        "the stop in force")
        assert stop[0]["client_order_id"].startswith("tt") and stop[0]["quantity"] == 0.05
        assert active["total_unrealized_pnl"] == position["unrealized_pnl"]

        metrics = read(engine, "/api/performance/summary")["metrics"]
        slips = [ratio(Decimal(abs(p - m)) / m * 10_000) for _s, _q, p, m in fills.values()]
        assert {k: Decimal(str(metrics[k])) for k in ("total_pnl", "avg_win", "avg_loss", "win_rate",
                                                     "payoff_ratio", "max_drawdown", "max_drawdown_pct",
                                                     "avg_slippage_bps")} == {
            "total_pnl": win + loss, "avg_win": ratio(win), "avg_loss": ratio(loss),
            "win_rate": Decimal("0.5"),
            "payoff_ratio": ratio(win / -loss), "max_drawdown": -loss,
            "max_drawdown_pct": ratio(-loss / (10000 + win) * 100),
            "avg_slippage_bps": ratio(sum(slips) / len(slips))}
        assert (metrics["total_trades"], metrics["winning_trades"], metrics["losing_trades"]) == (2, 1, 1)
        assert metrics["sharpe_ratio"] is None, "one day of closes has no spread"

        orders = read(engine, "/api/orders?status=open")["orders"]
        assert sorted((o["signal_id"], o["leg"]) for o in orders) == [
            ("rd-5", "sl"), ("rd-5", "tp1"), ("rd-w", "entry")], orders
        assert read(engine, "/api/orders?status=final&limit=2")["limit"] == 2
        assert read(engine, "/api/orders?status=final&limit=2")["total"] == 5
        snapshots = read(engine, "/api/regime/snapshots")["snapshots"]
        assert [(s["signal_id"], s["trend"]) for s in snapshots] == [("rd-w", 0.5)]
        status, body, _ = call(base(engine) + "/api/trades?limit=5000",
                               headers={"Authorization": f"Bearer {token(engine, 'api')}"})
        assert status == 422 and body["reason"].startswith("limit:")
        status, body, _ = call(base(engine) + "/api/trades?start_date=yesterday",
                               headers={"Authorization": f"Bearer {token(engine, 'operator')}"})
        assert status == 422 and body["reason"].startswith("start_date:")
        today = time.strftime("%Y-%m-%d", time.gmtime())
        assert read(engine, f"/api/trades?start_date={today}&end_date={today}")["total"] == 5
        assert read(engine, "/api/trades?end_date=2020-01-01")["total"] == 0

        # `titan report` on the same run: files, and numbers that match the recorded fills.
        out = tmp_path / "report"
        result = subprocess.run(titan_cmd("report", "--out", str(out), "--json", "--config",
                                          str(engine.config)),
                                env=engine.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert (summary["filled_orders"], summary["closed_positions"]) == (5, 2)
        assert Decimal(str(summary["avg_slippage_bps"])) == sum(slips) / len(slips)
        assert Decimal(str(summary["total_pnl"])) == win + loss
        assert summary["avg_slippage_bps_by_venue"].keys() == {"paper"}
        assert sorted(summary["images"]) == ["latency.png", "pnl.png", "slippage.png", "slippage_by_algo.png",
                                             "slippage_by_venue.png"]
        assert summary["avg_slippage_bps_by_algo"].keys() == {"none"}
        for name in summary["images"]:
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        page = (out / "report.html").read_text()
        assert all(f'src="{name}"' in page for name in summary["images"]) and "rd-3" in page
        text = subprocess.run(titan_cmd("report", "--out", str(out), "--symbol", "ETHUSDT",
                                        "--config", str(engine.config)),
                              env=engine.env, capture_output=True, text=True, timeout=120)
        assert text.returncode == 0 and "filled orders: 0" in text.stdout, text.stdout + text.stderr
    finally:
        engine.stop()
