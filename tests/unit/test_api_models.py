"""The request models (domain.schema), the webhook's conversion and the
performance figures, without processes."""

from __future__ import annotations

import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from titan_actors.domain.performance import slippage_bps, summary
from titan_actors.domain.risk_rules import size_by_risk
from titan_actors.domain.schema import Field, Model
from titan_actors.domain.signals import ORDER, Refusal, parse_intent
from titan_actors.wire.api import webhook_request

VENUES = {"paper": frozenset({"BTCUSDT"})}


def test_a_field_refuses_what_its_schema_forbids_and_names_itself() -> None:
    price = Field("price", "number", "p", positive=True, maximum=Decimal(10))
    assert price.problem(5) is None and price.problem(10) is None
    assert price.problem(0) == "must be a finite number > 0"
    assert price.problem(11) == "11 is above the limit 10"
    assert price.problem(True) == "must be a number" and price.problem(float("nan")) == "must be a number"
    assert price.json_schema() == {"description": "p", "type": "number", "exclusiveMinimum": 0, "maximum": 10}
    model = Model("M", "m", (price, Field("n", "integer", "n", required=True)))
    assert model.problem({"price": 1}) == "n: missing"
    assert model.problem({"price": 1, "n": 1, "x": 2}) == "x: unknown field"
    assert model.json_schema()["required"] == ["n"] and model.json_schema()["additionalProperties"] is False


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
                 st.lists(st.floats(), max_size=12)))
def test_the_order_model_and_the_parser_agree_on_any_take_profits(value: object) -> None:
    body = {"signal_id": "s", "symbol": "BTCUSDT", "side": "buy", "quantity": 1, "order_type": "market",
            "take_profits": value}
    parsed = parse_intent(body, venues=VENUES, default_venue="paper")
    field = ORDER.field("take_profits")
    assert isinstance(parsed, Refusal) == (field.problem(value) is not None)
    if isinstance(parsed, Refusal):
        assert parsed.reason.startswith("take_profits")


def test_the_webhook_turns_an_entry_zone_into_a_limit_order_and_keeps_the_rest_aside() -> None:
    request, extra, ladder = webhook_request({"type": "PREPARE", "signal_id": "s", "direction": -1,
                                              "quantity": 1, "entry_zone": [101.5], "regime_vector": {"a": 1},
                                              "phase": 3})
    assert request["order_type"] == "limit" and request["price"] == 101.5 and "entry_zone" not in request
    assert request["phase"] == 3 and extra == {"regime_vector": {"a": 1}} and ladder == ()
    assert webhook_request({"type": "PREPARE", "entry_zone": [3, 2, 1]})[2] == (3, 2, 1)
    market, _, _ = webhook_request({"type": "PREPARE", "signal_id": "s", "side": "buy", "quantity": 1})
    assert market["order_type"] == "market"
    assert webhook_request({"type": "PREPARE", "entry_zone": [1, 2, 3, 4, 5, 6]}).startswith("entry_zone:")
    assert webhook_request({"type": "PREPARE", "entry_zone": [1], "price": 2}).startswith("entry_zone:")
    assert webhook_request({"type": "CONFIRM", "signal_id": "s", "note": 1}) == (
        {"type": "CONFIRM", "signal_id": "s"}, {}, ())


def test_sizing_by_risk_is_exact_and_names_what_it_lacks() -> None:
    assert size_by_risk(equity=Decimal(10000), risk_pct=Decimal(1), entry=Decimal(60000),
                        stop_loss=Decimal(59000)) == Decimal("0.1")
    assert size_by_risk(equity=Decimal(10000), risk_pct=Decimal(1), entry=Decimal(100),
                        stop_loss=Decimal(100)).startswith("stop_loss:")
    assert size_by_risk(equity=Decimal(10000), risk_pct=Decimal(1), entry=None,
                        stop_loss=Decimal(1)).startswith("quantity:")


def test_slippage_is_signed_positive_when_worse_for_either_side() -> None:
    assert slippage_bps("buy", Decimal(100), Decimal("100.1")) == Decimal(10)
    assert slippage_bps("sell", Decimal(100), Decimal("100.1")) == Decimal(-10)
    assert slippage_bps("sell", None, Decimal(1)) is None


def test_the_performance_summary_matches_a_hand_computation() -> None:
    day = 86_400_000
    closed = [{"symbol": "A", "net_pnl": Decimal(100), "closed_at": 1 * day},
              {"symbol": "A", "net_pnl": Decimal(-50), "closed_at": 2 * day},
              {"symbol": "B", "net_pnl": Decimal(-30), "closed_at": 2 * day + 5},
              {"symbol": "B", "net_pnl": Decimal(60), "closed_at": 3 * day}]
    trades = [{"symbol": "A", "execution_latency_ms": 10, "slippage_bps": Decimal(2)},
              {"symbol": "B", "execution_latency_ms": 30, "slippage_bps": None}]
    got = summary(closed, trades, equity=Decimal(1000))
    m = got["metrics"]
    assert (m["total_trades"], m["winning_trades"], m["losing_trades"]) == (4, 2, 2)
    assert m["win_rate"] == Decimal("0.5")
    assert (m["total_pnl"], m["avg_win"], m["avg_loss"], m["payoff_ratio"]) == (
        Decimal(80), Decimal(80), Decimal(-40), Decimal(2))
    # curve 100, 50, 20, 80: peak 100, deepest 20 -> drawdown 80, 80 / (1000 + 100)
    assert m["max_drawdown"] == 80 and m["max_drawdown_pct"] == (Decimal(80) / 1100 * 100).quantize(
        Decimal("1e-10")).normalize()
    daily = [Decimal(100), Decimal(-80), Decimal(60)]
    mean = sum(daily) / 3
    spread = (sum((d - mean) ** 2 for d in daily) / 2).sqrt()
    assert m["sharpe_ratio"] == (mean / spread * Decimal(365).sqrt()).quantize(Decimal("1e-10")).normalize()
    floats = [100.0, -80.0, 60.0]
    spread_f = math.sqrt(sum((d - sum(floats) / 3) ** 2 for d in floats) / 2)
    assert math.isclose(float(m["sharpe_ratio"]), sum(floats) / 3 / spread_f * math.sqrt(365), rel_tol=1e-9)
    assert (m["avg_execution_latency_ms"], m["avg_slippage_bps"]) == (Decimal(20), Decimal(2))
    assert got["by_symbol"]["B"]["total_pnl"] == Decimal(30)
    assert got["by_symbol"]["B"]["sharpe_ratio"] is not None
