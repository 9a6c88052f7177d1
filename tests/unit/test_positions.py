from __future__ import annotations

import random
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from titan_actors.domain.money import to_decimal
from titan_actors.domain.positions import Position, apply_fill, unrealised_pnl


def _fold(fills):
    p, closed = Position(), []
    for side, qty, price, fee, ts in fills:
        p, c = apply_fill(p, side, to_decimal(qty), to_decimal(price), to_decimal(fee), ts)
        if c:
            closed.append(c)
    return p, closed


def test_a_long_that_is_sold_at_a_higher_price_realises_the_difference() -> None:
    p, closed = _fold([("buy", 2, 100, 0.2, 1), ("sell", 2, 110, 0.22, 5)])
    assert p.flat and p.realised_pnl == 20 and p.fees == D("0.42")
    (trade,) = closed
    assert (trade.side, trade.size, trade.entry_price, trade.exit_price) == ("long", 2, 100, 110)
    assert trade.realised_pnl == 20 and trade.fees == D("0.42")
    assert trade.net_pnl == D("19.58") and trade.duration_ms == 4


def test_averaging_in_moves_the_entry_price() -> None:
    p, _ = _fold([("buy", 1, 100, 0, 1), ("buy", 3, 120, 0, 2)])
    assert p.qty == 4 and p.avg_entry == 115
    assert unrealised_pnl(p, D(125)) == 40


def test_a_flip_closes_one_side_and_opens_the_other_at_the_fill_price() -> None:
    p, closed = _fold([("buy", 1, 100, 0, 1), ("sell", 3, 90, 0, 2)])
    assert p.qty == -2 and p.avg_entry == 90 and p.realised_pnl == -10
    assert len(closed) == 1 and closed[0].side == "long" and closed[0].realised_pnl == -10
    p, closed = apply_fill(p, "buy", D(2), D(80), D(0), 3)
    assert p.flat and closed.side == "short" and closed.realised_pnl == 20


def test_a_short_profits_when_the_price_falls() -> None:
    p, closed = _fold([("sell", 1.5, 200, 0, 1), ("buy", 0.5, 180, 0, 2)])
    assert p.qty == -1 and p.realised_pnl == 10
    assert unrealised_pnl(p, D(170)) == 30
    assert closed == []


def test_ten_fills_of_a_tenth_make_exactly_one() -> None:
    p, _ = _fold([("buy", 0.1, 100, 0, i) for i in range(10)])
    assert p.qty == 1 and str(p.qty) == "1.0"
    p, closed = _fold([("buy", 0.1, 100, 0, i) for i in range(10)] + [("sell", 1, 100, 0, 11)])
    assert p.flat and len(closed) == 1


fills = st.lists(
    st.tuples(st.sampled_from(["buy", "sell"]), st.decimals(D("0.001"), D(10), places=3),
              st.decimals(D(1), D(1000), places=2), st.decimals(D(0), D(1), places=4)),
    min_size=1, max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(fills=fills, seed=st.integers(0, 2**32))
def test_the_net_quantity_and_fees_are_the_exact_sum_of_the_fills_in_any_order(fills, seed) -> None:
    stamped = [(s, q, p, f, i) for i, (s, q, p, f) in enumerate(fills)]
    shuffled = list(stamped)
    random.Random(seed).shuffle(shuffled)
    for order in (stamped, shuffled):
        p, _ = _fold(order)
        assert p.qty == sum(q if s == "buy" else -q for s, q, *_ in fills)
        assert p.fees == sum(f for *_, f in fills)
        assert p.fills == len(fills)
        assert p.flat == (p.qty == 0)


@settings(max_examples=300, deadline=None)
@given(fills=fills, mark=st.decimals(D(1), D(1000), places=2))
def test_realised_plus_unrealised_is_the_cash_flow_marked_to_market(fills, mark) -> None:
    stamped = [(s, q, p, f, i) for i, (s, q, p, f) in enumerate(fills)]
    p, closed = _fold(stamped)
    cash = sum((-q if s == "buy" else q) * px for s, q, px, _f, _t in stamped)
    # Exact but for the average entry's division (28 significant digits).
    assert abs(p.realised_pnl + unrealised_pnl(p, mark) - (cash + p.qty * mark)) < D("1e-15")
    open_part = p.trade_realised if not p.flat else 0
    assert abs(sum(c.realised_pnl for c in closed) - (p.realised_pnl - open_part)) < D("1e-15")
