"""What comparing the shadow state with the venue concludes, without processes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from titan_actors.domain.positions import Position
from titan_actors.domain.reconciliation import reconcile

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
