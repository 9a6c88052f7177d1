"""Bracket exits of a filled entry: normalised and checked like the entry."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from titan_actors.domain.brackets import exit_orders, fit_exits, stop_quantity
from titan_actors.domain.money import Instrument
from titan_actors.domain.orders import order_from_intent
from titan_actors.domain.signals import OrderIntent

BTC = Instrument("BTCUSDT", qty_step=D("0.001"), tick=D("0.1"), min_qty=D("0.001"), min_notional=D(5))


def _entry(filled: str, *, side: str = "buy", stop: str | None = "55000.04",
           tps: tuple[str, ...] = ("65000.06", "66000.01", "67000")) -> object:
    intent = OrderIntent("s1", "BTCUSDT", side, D(filled), "market", None, "GTC", False, "bybit",
                         D(stop) if stop else None, tuple(D(p) for p in tps), None, None, 5000)
    return replace(order_from_intent(intent, "c1", 0), filled_qty=D(filled), status="FILLED")


def test_the_stop_covers_the_fill_and_its_trigger_moves_away_from_the_market() -> None:
    exits, problems = exit_orders(_entry("0.010"), BTC, 1)
    (stop,) = [o for o in exits if o.leg == "sl"]
    assert problems == []
    assert (stop.side, stop.quantity, stop.trigger_price) == ("sell", D("0.010"), D("55000.0"))
    assert stop.reduce_only
    short = exit_orders(_entry("0.010", side="sell", stop="70000.01", tps=()), BTC, 1)[0]
    assert short[0].trigger_price == D("70000.1")  # a buy stop rounds up


def test_take_profits_split_the_fill_on_the_step_at_prices_never_worse() -> None:
    exits, _ = exit_orders(_entry("0.010"), BTC, 1)
    tps = [(o.leg, o.quantity, o.price) for o in exits if o.leg.startswith("tp")]
    assert tps == [("tp1", D("0.004"), D("65000.1")), ("tp2", D("0.003"), D("66000.1")),
                   ("tp3", D("0.003"), D("67000"))]
    assert sum(q for _l, q, _p in tps) == D("0.010")


def test_a_slice_under_the_minimum_notional_merges_into_the_previous_one() -> None:
    small = replace(BTC, min_notional=D(150))
    exits, problems = exit_orders(_entry("0.005"), small, 1)
    tps = [(o.leg, o.quantity) for o in exits if o.leg.startswith("tp")]
    # 0.003, 0.001, 0.001: the last two (66 and 67 at their prices) are under 150 and merge into tp1.
    assert tps == [("tp1", D("0.005"))]
    assert problems == []


def test_a_leg_that_cannot_be_placed_is_named_not_sent() -> None:
    exits, problems = exit_orders(_entry("0.001"), replace(BTC, min_notional=D(100)), 1)
    assert exits == []
    assert [p.split(":")[0] for p in problems] == ["sl", "tp1"]


def test_no_fill_means_no_exits() -> None:
    assert exit_orders(_entry("0"), BTC, 1) == ([], [])


def test_the_stop_covers_what_the_take_profits_left() -> None:
    entry = _entry("0.010")
    exits, _ = exit_orders(entry, BTC, 1)
    tp1, tp2, tp3 = [o for o in exits if o.leg.startswith("tp")]
    assert stop_quantity(entry, [replace(tp1, filled_qty=D("0.004"))]) == D("0.006")
    assert stop_quantity(entry, [replace(t, filled_qty=t.quantity) for t in (tp1, tp2, tp3)]) == 0


# --- exits follow what filled (fit_exits) --------------------------------------------------------

def _resting(filled: str, **kwargs) -> object:
    return replace(_entry(filled, **kwargs), quantity=D("0.010"), status="PARTIALLY_FILLED")


def _accepted(orders: list) -> list:
    return [replace(o, status="ACCEPTED", order_id="v") for o in orders]


def _amends(_order) -> bool:
    return True


def _never(_order) -> bool:
    return False


def test_the_first_fill_places_every_exit_sized_to_it() -> None:
    entry = _resting("0.004", tps=("65000",))
    for amends in (_amends, _never):
        plan = fit_exits(entry, [], BTC, 1, amends=amends)
        assert [(o.leg, o.quantity, o.version) for o in plan.place] == [("sl", D("0.004"), 1),
                                                                        ("tp1", D("0.004"), 1)]
        assert not plan.complete


def test_later_fills_grow_the_exits_and_a_take_profit_fill_shrinks_the_stop() -> None:
    first = fit_exits(_resting("0.004", tps=("65000", "66000")), [], BTC, 1, amends=_amends)
    legs = _accepted(first.place)
    grown = fit_exits(_resting("0.007", tps=("65000", "66000")), legs, BTC, 1, amends=_amends)
    assert grown.place == [] and grown.cancel == []
    assert sorted((o.leg, q) for o, q in grown.resize) == [("sl", D("0.007")), ("tp1", D("0.004")),
                                                          ("tp2", D("0.003"))]
    sizes = {o.client_order_id: q for o, q in grown.resize}
    legs = [replace(o, quantity=sizes[o.client_order_id]) for o in legs]
    legs = [replace(o, filled_qty=D("0.004"), status="FILLED") if o.leg == "tp1" else o for o in legs]
    filled = replace(_resting("0.007", tps=("65000", "66000")), status="FILLED", quantity=D("0.007"))
    after_tp = fit_exits(filled, legs, BTC, 1, amends=_amends)
    assert [(o.leg, q) for o, q in after_tp.resize] == [("sl", D("0.003"))]
    assert after_tp.place == [], "a closing bracket gets no new leg"


def test_where_the_venue_cannot_amend_a_leg_is_replaced_and_the_old_one_canceled_once_the_new_is_there(
) -> None:
    v1 = _accepted(fit_exits(_resting("0.004", tps=("65000",)), [], BTC, 1, amends=_never).place)
    # The take-profit took 0.001: the stop covers the rest, the new take-profit what its leg has not taken.
    v1 = [replace(o, filled_qty=D("0.001")) if o.leg == "tp1" else o for o in v1]
    grown = fit_exits(_resting("0.007", tps=("65000",)), v1, BTC, 1, amends=_never)
    assert grown.resize == [] and grown.cancel == []
    assert sorted((o.leg, o.version, o.quantity) for o in grown.place) == [("sl", 2, D("0.006")),
                                                                           ("tp1", 2, D("0.006"))]
    assert len({o.client_order_id for o in v1 + grown.place}) == 4, "each version is an order of its own"
    sent = fit_exits(_resting("0.007", tps=("65000",)), v1 + grown.place, BTC, 1, amends=_never)
    assert (sent.place, sent.cancel) == ([], []), "the old ones stay until the new ones are at the venue"
    there = fit_exits(_resting("0.007", tps=("65000",)), v1 + _accepted(grown.place), BTC, 1, amends=_never)
    assert sorted((o.leg, o.version) for o in there.cancel) == [("sl", 1), ("tp1", 1)]
    assert there.place == [] and there.resize == []


def test_a_leg_not_yet_acknowledged_is_left_alone_and_a_fitted_bracket_is_complete() -> None:
    entry = replace(_resting("0.004", tps=("65000",)), status="FILLED")
    placed = fit_exits(entry, [], BTC, 1, amends=_amends).place  # SUBMITTED: the venue has not answered
    bigger = replace(entry, filled_qty=D("0.005"))
    assert fit_exits(bigger, placed, BTC, 1, amends=_amends).resize == []
    done = fit_exits(entry, _accepted(placed), BTC, 1, amends=_amends)
    assert (done.place, done.resize, done.cancel, done.complete) == ([], [], [], True)
