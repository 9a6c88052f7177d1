"""What comparing the shadow state with the venue concludes, without processes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from titan_actors.domain.positions import Position
from titan_actors.domain.reconciliation import FillInFlight, reconcile

FLAT = Position()


def _run(position: Position = FLAT, *, venue_qty: str = "0", venue_avg: str | None = None,
         shadow_open: dict | None = None, venue_open: dict | None = None, ended: set | None = None,
         policy: str = "adopt", spot: bool = False, wallet_base: D | None = None, reported=None):
    return reconcile(venue="ex", position=position, shadow_open=shadow_open or {}, ended=ended or set(),
                     venue_qty=D(venue_qty), venue_avg=D(venue_avg) if venue_avg else None,
                     venue_open=venue_open or {}, policy=policy, tolerance=D(0), spot=spot,
                     wallet_base=wallet_base, reported=reported)


ORDER = {"side": "buy", "remaining": D("0.1"), "price": D(100), "status": "ACCEPTED"}


def test_equal_figures_are_ok_and_change_nothing() -> None:
    p = Position(qty=D("0.3"), avg_entry=D(100))
    out = _run(p, venue_qty="0.3", venue_avg="100", shadow_open={"a": ORDER}, venue_open={"a": ORDER})
    assert (out.result, out.corrections, out.position, out.halt) == ("ok", [], p, "")


def test_orders_are_adopted_or_closed_at_the_venue_but_an_ended_one_is_not_reopened() -> None:
    out = _run(shadow_open={"gone": ORDER}, venue_open={"new": ORDER, "done": ORDER}, ended={"done"})
    assert [k for k, _d in out.corrections] == ["OrderAdopted", "OrderClosedAtVenue"]
    assert set(out.adopted) == {"new"} and set(out.closed) == {"gone"}


@pytest.mark.parametrize(("policy", "qty", "halt"), [("adopt", D("0.5"), False), ("halt", D("0.3"), True)])
def test_drift_is_adopted_or_halts_and_is_reported_once(policy, qty, halt) -> None:
    p = Position(qty=D("0.3"), avg_entry=D(100))
    out = _run(p, venue_qty="0.5", venue_avg="101", policy=policy)
    assert out.result == f"drift ({policy})"
    ((kind, drift),) = out.corrections
    assert kind == "PositionDrift"
    assert (drift["shadow_qty"], drift["venue_qty"], drift["diff"]) == (D("0.3"), D("0.5"), D("0.2"))
    assert out.position.qty == qty and bool(out.halt) == halt
    again = _run(p, venue_qty="0.5", policy=policy, reported=out.drift_key)
    assert again.corrections == [] and again.result == f"drift ({policy})" and not again.halt


def test_a_spot_wallet_keeps_its_own_coins_apart_and_the_engines_entry_price() -> None:
    first = _run(Position(), venue_qty="0.5", spot=True)
    assert (first.result, first.wallet_base) == ("ok", D("0.5"))
    mine = Position(qty=D("0.01"), avg_entry=D(60000))
    assert _run(mine, venue_qty="0.51", spot=True, wallet_base=first.wallet_base).result == "ok"
    sold = _run(mine, venue_qty="0.508", spot=True, wallet_base=first.wallet_base)
    assert sold.position.qty == D("0.008") and sold.position.avg_entry == 60000
    assert sold.corrections[0][1]["wallet_qty"] == D("0.508")


# --- the consistent cut: fills on their way are never drift ---------------------------------------

def _fill(trade_id: str, qty: str, ts: int, counted: bool) -> FillInFlight:
    return FillInFlight(trade_id, D(qty), ts, counted)


def test_a_fill_the_venue_counts_and_the_shadow_has_not_applied_yet_is_not_drift() -> None:
    out = reconcile_cut(shadow="0.1", venue="0.3", in_flight=[_fill("t1", "0.2", 1, True)])
    assert (out.result, out.corrections) == ("ok", [])


def test_fills_learned_while_asking_match_whichever_prefix_the_venue_counted() -> None:
    learned = [_fill("t2", "0.1", 2, False), _fill("t3", "-0.05", 3, False), _fill("t4", "0.2", 4, False)]
    cases = [("0.5", set()), ("0.6", set()), ("0.55", set()), ("0.75", set()), ("0.45", {"t2"}),
             ("0.3", {"t2", "t3", "t4"}), ("0.55", {"t4"})]
    for venue, applied in cases:
        out = reconcile_cut(shadow="0.5", venue=venue, in_flight=learned, applied=applied)
        assert out.result == "ok", (venue, applied)
    # t3 without t2 before it is no cut of the venue's history.
    assert reconcile_cut(shadow="0.5", venue="0.45", in_flight=learned).result == "drift (adopt)"


def test_an_out_of_band_trade_among_fills_in_flight_is_drift_of_exactly_its_size() -> None:
    in_flight = [_fill("t1", "0.2", 1, True), _fill("t2", "0.1", 2, False)]
    # The venue counted t1 and t2; someone sold 0.005 on the exchange's site.
    out = reconcile_cut(shadow="1", venue="1.295", in_flight=in_flight)
    ((kind, drift),) = out.corrections
    assert kind == "PositionDrift"
    assert (drift["diff"], drift["in_flight"]) == (D("-0.005"), D("0.3"))
    assert out.position.qty == D("0.995"), "the shadow takes what no cut explains; the fills come on top"


def test_drift_that_several_cuts_could_explain_is_unsure_until_told_to_settle() -> None:
    learned = [_fill("t2", "0.001", 2, False)]
    # 0.995 or 0.996 of ours with -0.005 or -0.004 from outside: the size is a guess.
    unsure = reconcile_cut(shadow="1", venue="0.996", in_flight=learned, settle=False)
    assert (unsure.result, unsure.corrections, unsure.position.qty) == ("unsure", [], D(1))
    settled = reconcile_cut(shadow="1", venue="0.996", in_flight=learned, settle=True)
    assert settled.result == "drift (adopt)" and settled.corrections[0][1]["diff"] == D("-0.004")
    # Without fills in flight there is one cut: the drift's size is known at once.
    assert reconcile_cut(shadow="1", venue="0.995", in_flight=[], settle=False).result == "drift (adopt)"


def test_orders_with_an_update_on_its_way_are_neither_adopted_nor_closed() -> None:
    out = _run(shadow_open={"filling": ORDER}, venue_open={"sent": ORDER})
    assert set(out.adopted) == {"sent"} and set(out.closed) == {"filling"}
    out = reconcile(venue="ex", position=FLAT, shadow_open={"filling": ORDER}, ended=set(), venue_qty=D(0),
                    venue_avg=None, venue_open={"sent": ORDER}, policy="adopt", tolerance=D(0), spot=False,
                    wallet_base=None, reported=None, orders_in_flight={"filling", "sent"})
    assert out.corrections == [] and not out.adopted and not out.closed


def reconcile_cut(*, shadow: str, venue: str, in_flight: list[FillInFlight], applied: set[str] | None = None,
                  policy: str = "adopt", settle: bool = True):
    return reconcile(venue="ex", position=Position(qty=D(shadow), avg_entry=D(100)), shadow_open={},
                     ended=set(), venue_qty=D(venue), venue_avg=None, venue_open={}, policy=policy,
                     tolerance=D(0), spot=False, wallet_base=None, reported=None, in_flight=in_flight,
                     applied=applied or set(), settle=settle)


_SIZES = st.sampled_from([D("0.001"), D("0.01"), D("0.1"), D("0.25"), D(1)])


@st.composite
def _histories(draw):
    """Our fills in the venue's order; the adapter knew the first `asked` when
    it asked, the venue's figure counts the first `read`, and the adapter
    learned up to `learned` (at least `read`: it polls after reading)."""
    fills = [(s if draw(st.booleans()) else -s) for s in draw(st.lists(_SIZES, max_size=12))]
    asked = draw(st.integers(0, len(fills)))
    read = draw(st.integers(asked, len(fills)))
    learned = draw(st.integers(read, len(fills)))
    acked = draw(st.sets(st.integers(0, asked - 1))) if asked else set()
    applied_late = draw(st.sets(st.integers(asked, learned - 1))) if learned > asked else set()
    return fills, asked, read, learned, acked, applied_late


@settings(max_examples=300, deadline=None)
@given(_histories(), st.sampled_from([D(0), D("0.005"), D("-0.3")]))
def test_only_a_trade_outside_the_engine_is_drift_and_adopting_it_converges(history, outside) -> None:
    fills, asked, read, learned, acked, applied_late = history
    applied_ids = {str(i) for i in acked | applied_late}
    shadow = sum((fills[i] for i in acked | applied_late), D(0))
    in_flight = [FillInFlight(str(i), fills[i], i, True) for i in range(asked) if i not in acked]
    in_flight += [FillInFlight(str(i), fills[i], i, False) for i in range(asked, learned)]
    venue = sum(fills[:read], D(0)) + outside
    out = reconcile(venue="ex", position=Position(qty=shadow), shadow_open={}, ended=set(), venue_qty=venue,
                    venue_avg=None, venue_open={}, policy="adopt", tolerance=D(0), spot=False,
                    wallet_base=None, reported=None, in_flight=in_flight, applied=applied_ids)
    if outside == 0:
        assert out.result == "ok" and out.corrections == []
    else:
        assert out.result == "drift (adopt)" or asked < learned, "only fills learned while asking blur a cut"
    if asked == learned:  # the cut is known: once the fills on their way arrive, the shadow is the venue's
        rest = sum((fills[i] for i in range(learned) if str(i) not in applied_ids), D(0))
        assert out.position.qty + rest == sum(fills[:learned], D(0)) + outside
