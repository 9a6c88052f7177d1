from __future__ import annotations

import pytest

from titan_actors.domain.money import to_decimal, to_decimal_or_none
from titan_actors.domain.risk_rules import (
    RULES,
    Exposure,
    OrderView,
    PolicyError,
    check_order,
    policy_from_config,
)
from titan_actors.domain.throttle import TokenBucket


def _order(**kw) -> OrderView:
    base = {"venue": "paper", "symbol": "BTCUSDT", "side": "buy", "qty": 1.0, "order_type": "limit",
            "price": 100.0, "reduce_only": False, "strategy_id": "s1"}
    view = {**base, **kw}
    return OrderView(**{**view, "qty": to_decimal(view["qty"]), "price": to_decimal_or_none(view["price"])})


def _exposure(**kw) -> Exposure:
    return Exposure(**{k: v if "orders" in k else to_decimal(v) for k, v in kw.items()})


def _verdict(rule: str, order: OrderView, policy_raw: dict, exposure: Exposure | None = None, *,
             market: float | None = 100.0, reference: float | None = 100.0,
             venue_rate: float | None = None, strategy_rate: float | None = None):
    verdicts = check_order(order, policy_from_config(policy_raw), exposure or Exposure(),
                           market=to_decimal_or_none(market), reference=to_decimal_or_none(reference),
                           venue_rate=venue_rate, strategy_rate=strategy_rate)
    assert [v.rule for v in verdicts] == list(RULES)
    return next(v for v in verdicts if v.rule == rule)


@pytest.mark.parametrize(
    ("rule", "policy", "refused", "passed"),
    [
        ("allowed_venue", {"allowed_venues": ["bybit"]}, _order(), _order(venue="bybit")),
        ("allowed_symbol", {"allowed_symbols": ["ETHUSDT"]}, _order(), _order(symbol="ETHUSDT")),
        ("max_order_qty", {"max_order_qty": 2}, _order(qty=3), _order(qty=2)),
        ("max_order_notional", {"max_order_notional": 250}, _order(qty=3), _order(qty=2.5)),
        ("price_band", {"price_band_bps": 500}, _order(price=106), _order(price=104)),
        ("price_band", {"price_band_bps": 500}, _order(price=94), _order(price=96)),
    ],
)
def test_each_simple_rule_refuses_what_it_must_and_passes_what_it_may(rule, policy, refused, passed) -> None:
    no = _verdict(rule, refused, policy)
    assert not no.ok and no.reason
    assert _verdict(rule, passed, policy).ok


def test_per_symbol_limits_override_the_global_ones() -> None:
    policy = {"max_order_qty": 1, "symbols": {"ETHUSDT": {"max_order_qty": 10}}}
    assert not _verdict("max_order_qty", _order(qty=5), policy).ok
    assert _verdict("max_order_qty", _order(qty=5, symbol="ETHUSDT"), policy).ok


def test_position_notional_counts_filled_and_pending_orders_on_the_same_side() -> None:
    policy = {"max_position_notional": 500}
    pending = _exposure(position_qty=2, open_buy_qty=2)
    assert not _verdict("max_position_notional", _order(qty=1.5), policy, pending).ok
    assert _verdict("max_position_notional", _order(qty=1), policy, pending).ok
    # An order that only reduces the filled position passes even above the limit.
    big = _exposure(position_qty=8)
    assert _verdict("max_position_notional", _order(side="sell", qty=3), policy, big).ok
    assert not _verdict("max_position_notional", _order(side="buy", qty=0.1), policy, big).ok


def test_gross_notional_and_leverage_add_the_other_symbols() -> None:
    exposure = _exposure(gross_notional_other=900)
    assert not _verdict("max_gross_notional", _order(qty=2), {"max_gross_notional": 1000}, exposure).ok
    assert _verdict("max_gross_notional", _order(qty=1), {"max_gross_notional": 1000}, exposure).ok
    lev = {"max_leverage": 2, "equity": 500}
    assert not _verdict("max_leverage", _order(qty=2), lev, exposure).ok
    assert _verdict("max_leverage", _order(qty=1), lev, exposure).ok


def test_open_order_limits_per_symbol_and_overall() -> None:
    assert not _verdict("max_open_orders", _order(), {"max_open_orders": 3}, _exposure(open_orders=3)).ok
    assert _verdict("max_open_orders", _order(), {"max_open_orders": 3}, _exposure(open_orders=2)).ok
    total = {"max_open_orders_total": 5}
    assert not _verdict("max_open_orders_total", _order(), total, _exposure(open_orders_total=5)).ok


def test_without_a_market_price_orders_are_judged_at_the_reference_or_refused_by_config() -> None:
    market = _order(order_type="market", price=None)
    assert _verdict("market_price", market, {}, market=None).ok  # default: the reference price
    assert not _verdict("max_order_notional", market, {"max_order_notional": 50}, market=None).ok
    strict = {"no_market_price": "refuse_market"}
    assert not _verdict("market_price", market, strict, market=None).ok
    assert _verdict("market_price", market, strict, market=101).ok
    assert _verdict("market_price", _order(), strict, market=None).ok
    assert not _verdict("price_band", _order(price=120), {"price_band_bps": 100}, market=None).ok
    refuse = {"no_market_price": "refuse"}
    assert not _verdict("market_price", _order(), refuse, market=None).ok
    assert not _verdict("market_price", market, {}, market=None, reference=None).ok


def test_throttles_refuse_when_no_token_is_left() -> None:
    assert not _verdict("rate_per_venue", _order(), {}, venue_rate=0.5).ok
    assert _verdict("rate_per_venue", _order(), {}, venue_rate=1.0).ok
    assert not _verdict("rate_per_strategy", _order(), {}, strategy_rate=0.0).ok
    bucket = TokenBucket(2, now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.available(0.0) < 1
    assert bucket.available(0.5) == pytest.approx(1.0)
    assert bucket.available(10.0) == 2


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"max_order_qty": -1}, "max_order_qty"),
        ({"max_order_notional": "a lot"}, "max_order_notional"),
        ({"max_open_orders": 2.5}, "max_open_orders"),
        ({"no_market_price": "guess"}, "no_market_price"),
        ({"max_leverage": 3}, "equity"),
        ({"unknown_rule": 1}, "unknown_rule"),
        ({"symbols": {"BTCUSDT": {"max_qty": 1}}}, "symbols.BTCUSDT.max_qty"),
    ],
)
def test_an_invalid_policy_is_refused_naming_the_key(raw, key) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_config(raw)
    assert info.value.key == key
