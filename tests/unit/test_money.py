"""Exact money: parsing at the edges, rounding to the venue's step and tick,
minimums, slices, and the JSON numbers the engine writes."""

from __future__ import annotations

from decimal import Decimal as D

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from titan_actors.domain.money import (
    Instrument,
    json_default,
    json_number,
    loads_exact,
    split_quantity,
    to_decimal,
)

steps = st.sampled_from([D("1"), D("0.1"), D("0.01"), D("0.001"), D("0.0001"), D("0.5"), D("0.25"), D("5")])
ticks = st.sampled_from([D("0.1"), D("0.01"), D("0.5"), D("0.05"), D("1"), D("0.0001")])
quantities = st.decimals(D("0.00001"), D(10_000), places=8)
prices = st.decimals(D("0.0001"), D(200_000), places=6)


@pytest.mark.parametrize(("value", "exact"), [(0.1, "0.1"), (1, "1"), ("2.50", "2.50"), (1e-7, "1E-7"),
                                              (60000.5, "60000.5"), (D("3.3"), "3.3")])
def test_a_number_becomes_the_decimal_its_text_said(value, exact) -> None:
    assert to_decimal(value) == D(exact)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, None, "abc", [1], D("NaN"), "Infinity"])
def test_what_is_not_a_finite_number_is_refused_naming_the_field(value) -> None:
    with pytest.raises(ValueError, match="quantity"):
        to_decimal(value, field="quantity")


def test_the_engine_writes_the_shortest_exact_number() -> None:
    total = sum([D("0.1")] * 3, D(0))
    assert orjson.dumps({"qty": total, "big": D("1E+3"), "zero": D("-0.000"), "tiny": D("1E-8")},
                        default=json_default) == b'{"qty":0.3,"big":1000,"zero":0,"tiny":0.00000001}'
    assert loads_exact(b'{"p": 59000.1234567890123456789}')["p"] == D("59000.1234567890123456789")
    assert json_number(D("5.000")) == "5"


@settings(max_examples=500, deadline=None)
@given(qty=quantities, step=steps)
def test_a_quantity_is_never_above_the_request_nor_off_the_step(qty, step) -> None:
    rounded = Instrument("X", qty_step=step).quantity(qty)
    assert rounded <= qty
    assert rounded % step == 0
    assert qty - rounded < step


@settings(max_examples=500, deadline=None)
@given(price=prices, tick=ticks, side=st.sampled_from(["buy", "sell"]))
def test_a_limit_price_is_on_the_tick_and_never_worse_for_the_order(price, tick, side) -> None:
    rounded = Instrument("X", tick=tick).limit_price(price, side)
    assert rounded % tick == 0
    assert abs(rounded - price) < tick
    assert (rounded <= price) if side == "buy" else (rounded >= price)


@settings(max_examples=500, deadline=None)
@given(price=prices, tick=ticks, side=st.sampled_from(["buy", "sell"]))
def test_a_stop_trigger_is_on_the_tick_and_never_closer_to_the_market(price, tick, side) -> None:
    rounded = Instrument("X", tick=tick).stop_price(price, side)
    assert rounded % tick == 0
    assert abs(rounded - price) < tick
    # A sell stop sits below the market: down moves it away; a buy stop above it: up.
    assert (rounded <= price) if side == "sell" else (rounded >= price)


@settings(max_examples=500, deadline=None)
@given(qty=quantities, step=steps, price=prices, min_qty=st.sampled_from([None, D("0.001"), D("0.1"), D(1)]),
       min_notional=st.sampled_from([None, D(5), D(100)]))
def test_an_order_accepted_is_never_under_the_minimums(qty, step, price, min_qty, min_notional) -> None:
    instrument = Instrument("X", qty_step=step, min_qty=min_qty, min_notional=min_notional)
    rounded = instrument.quantity(qty)
    if not instrument.too_small(rounded, price):
        assert rounded > 0
        assert min_qty is None or rounded >= min_qty
        assert min_notional is None or rounded * price >= min_notional


@settings(max_examples=500, deadline=None)
@given(total=quantities, step=steps, parts=st.integers(1, 6), price=prices,
       min_notional=st.sampled_from([None, D(5), D(100), D(10_000)]))
def test_slices_sum_to_the_total_and_only_the_first_or_a_lone_one_is_small(total, step, parts, price,
                                                                           min_notional) -> None:
    instrument = Instrument("X", qty_step=step, min_notional=min_notional)
    total = instrument.quantity(total)
    slices = split_quantity(total, parts, instrument, [price] * parts)
    assert sum(q for _i, q in slices) == total
    assert [i for i, _q in slices] == sorted({i for i, _q in slices})
    assert all(q % step == 0 for _i, q in slices)
    if len(slices) > 1:
        assert not any(instrument.too_small(q, price) for _i, q in slices)


def test_a_slice_below_the_minimum_merges_into_the_previous_one() -> None:
    instrument = Instrument("X", qty_step=D("0.001"), min_notional=D(5))
    # 0.012 in three at 1000: 0.004 each, 4 < 5: all merge into one of 0.012.
    assert split_quantity(D("0.012"), 3, instrument, [D(1000)] * 3) == [(0, D("0.012"))]
    # 0.011 in two at 1000: 0.006 and 0.005, both at or above 5.
    assert split_quantity(D("0.011"), 2, instrument, [D(1000)] * 2) == [(0, D("0.006")), (1, D("0.005"))]
