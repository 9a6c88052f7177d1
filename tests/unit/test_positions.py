from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from titan_actors.domain.positions import Position, apply_fill, unrealised_pnl


def _fold(fills):
    p, closed = Position(), []
    for side, qty, price, fee, ts in fills:
        p, c = apply_fill(p, side, qty, price, fee, ts)
        if c:
            closed.append(c)
    return p, closed


def test_a_long_that_is_sold_at_a_higher_price_realises_the_difference() -> None:
    p, closed = _fold([("buy", 2, 100, 0.2, 1), ("sell", 2, 110, 0.22, 5)])
    assert p.flat and p.realised_pnl == pytest.approx(20) and p.fees == pytest.approx(0.42)
    (trade,) = closed
    assert (trade.side, trade.size, trade.entry_price, trade.exit_price) == ("long", 2, 100, 110)
    assert trade.realised_pnl == pytest.approx(20) and trade.fees == pytest.approx(0.42)
    assert trade.net_pnl == pytest.approx(19.58) and trade.duration_ms == 4


def test_averaging_in_moves_the_entry_price() -> None:
    p, _ = _fold([("buy", 1, 100, 0, 1), ("buy", 3, 120, 0, 2)])
    assert p.qty == 4 and p.avg_entry == pytest.approx(115)
    assert unrealised_pnl(p, 125) == pytest.approx(40)


def test_a_flip_closes_one_side_and_opens_the_other_at_the_fill_price() -> None:
    p, closed = _fold([("buy", 1, 100, 0, 1), ("sell", 3, 90, 0, 2)])
    assert p.qty == pytest.approx(-2) and p.avg_entry == 90 and p.realised_pnl == pytest.approx(-10)
    assert len(closed) == 1 and closed[0].side == "long" and closed[0].realised_pnl == pytest.approx(-10)
    p, closed = apply_fill(p, "buy", 2, 80, 0, 3)
    assert p.flat and closed.side == "short" and closed.realised_pnl == pytest.approx(20)


def test_a_short_profits_when_the_price_falls() -> None:
    p, closed = _fold([("sell", 1.5, 200, 0, 1), ("buy", 0.5, 180, 0, 2)])
    assert p.qty == pytest.approx(-1) and p.realised_pnl == pytest.approx(10)
    assert unrealised_pnl(p, 170) == pytest.approx(30)
    assert closed == []


fills = st.lists(
    st.tuples(st.sampled_from(["buy", "sell"]), st.floats(0.001, 10), st.floats(1, 1000),
              st.floats(0, 1)),
    min_size=1, max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(fills=fills, seed=st.integers(0, 2**32))
def test_the_net_quantity_and_fees_are_the_sum_of_the_fills_in_any_order(fills, seed) -> None:
    stamped = [(s, q, p, f, i) for i, (s, q, p, f) in enumerate(fills)]
    shuffled = list(stamped)
    random.Random(seed).shuffle(shuffled)
    for order in (stamped, shuffled):
        p, _ = _fold(order)
        assert p.qty == pytest.approx(sum(q if s == "buy" else -q for s, q, *_ in fills), abs=1e-6)
        assert p.fees == pytest.approx(sum(f for *_, f in fills), abs=1e-6)
        assert p.fills == len(fills)


@settings(max_examples=300, deadline=None)
@given(fills=fills, mark=st.floats(1, 1000))
def test_realised_plus_unrealised_is_the_cash_flow_marked_to_market(fills, mark) -> None:
    stamped = [(s, q, p, f, i) for i, (s, q, p, f) in enumerate(fills)]
    p, closed = _fold(stamped)
    cash = sum((-q if s == "buy" else q) * px for s, q, px, _f, _t in stamped)
    assert p.realised_pnl + unrealised_pnl(p, mark) == pytest.approx(cash + p.qty * mark, rel=1e-6, abs=1e-4)
    assert sum(c.realised_pnl for c in closed) == pytest.approx(
        p.realised_pnl - (p.trade_realised if not p.flat else 0.0), rel=1e-6, abs=1e-4)
