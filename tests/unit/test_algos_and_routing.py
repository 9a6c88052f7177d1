"""The schedules of the execution algorithms and smart routing, without processes."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from titan_actors.domain.algos import parse_algo, participation, twap_schedule, vwap_schedule
from titan_actors.domain.money import Instrument
from titan_actors.domain.routing import Book, Leg, RouteRefusal, route, split

STEP = Instrument("BTCUSDT", qty_step=Decimal("0.001"), min_qty=Decimal("0.001"))


@given(total=st.integers(1, 10_000).map(lambda n: Decimal(n) / 1000), slices=st.integers(1, 50),
       jitter=st.sampled_from([0, 10, 50]), seed=st.text(min_size=1, max_size=8))
def test_a_twap_schedule_sums_to_the_parent_exactly_on_the_step_and_inside_its_duration(
        total: Decimal, slices: int, jitter: int, seed: str) -> None:
    spec = {"type": "TWAP", "duration_s": 10, "slices": slices, "randomize_pct": jitter}
    schedule = twap_schedule(seed, total, spec, 1_000_000, STEP)
    assert sum(s.quantity for s in schedule) == total
    assert all(s.quantity > 0 and s.quantity % Decimal("0.001") == 0 for s in schedule)
    assert all(1_000_000 <= s.due_ms <= 1_010_000 for s in schedule)
    assert [s.n for s in schedule] == list(range(1, len(schedule) + 1))
    assert twap_schedule(seed, total, spec, 1_000_000, STEP) == schedule, "a restart draws the same"


def test_a_vwap_follows_its_profile_and_the_hourly_one_without() -> None:
    spec = {"type": "VWAP", "duration_s": 3, "slices": 3, "profile": [1, 2, 1]}
    assert [s.quantity for s in vwap_schedule("v", Decimal("1"), spec, 0, STEP, [Decimal(1)] * 24)] == [
        Decimal("0.25"), Decimal("0.5"), Decimal("0.25")]
    hourly = [Decimal(0)] * 24
    hourly[1] = Decimal(1)  # all the volume in the second hour
    spec = {"type": "VWAP", "duration_s": 7200, "slices": 2}
    assert [s.quantity for s in vwap_schedule("v", Decimal("1"), spec, 0, STEP, hourly)] == [Decimal(1)]


def test_participation_caps_a_slice_and_carries_the_rest() -> None:
    assert participation(Decimal("0.5"), Decimal("0.2"), Decimal(3), Decimal(10), STEP) == (
        Decimal("0.3"), Decimal("0.4"))
    assert participation(Decimal("0.5"), Decimal(0), None, Decimal(10), STEP) == (Decimal("0.5"), 0)


def test_algo_specs_are_checked() -> None:
    assert parse_algo({"type": "TWAP", "duration_s": 1}, order_type="market", quantity=Decimal(1)).startswith(
        "algo: TWAP needs")
    assert parse_algo({"type": "ICEBERG", "display_quantity": 2}, order_type="limit",
                      quantity=Decimal(1)).startswith("algo.display_quantity")
    assert parse_algo({"type": "FOO"}, order_type="market", quantity=Decimal(1)).startswith("algo.type")
    assert parse_algo({"type": "CHASE"}, order_type="market", quantity=Decimal(1)) == {"type": "CHASE"}


def _book(venue: str, asks: list[tuple[int, str]], ts: int = 1000) -> Book:
    levels = tuple((Decimal(p), Decimal(q)) for p, q in asks)
    return Book(venue, "BTCUSDT", tuple((p - 100, q) for p, q in levels), levels, ts)


def test_routing_adds_the_fee_and_refuses_stale_and_thin_books() -> None:
    books = {"a": _book("a", [(100_000, "1")]), "b": _book("b", [(100_050, "1")])}
    fees = {"a": Decimal(10), "b": Decimal(0)}  # a: 100100 with its fee, b: 100050
    assert route("buy", Decimal("0.5"), books, fees, now_ms=1500, max_age_ms=1000,
                 max_slippage_bps=Decimal(50)).venue == "b"
    assert route("buy", Decimal(2), books, fees, now_ms=1500, max_age_ms=1000,
                 max_slippage_bps=Decimal(50)) == RouteRefusal("book_thin", route(
                     "buy", Decimal(2), books, fees, now_ms=1500, max_age_ms=1000,
                     max_slippage_bps=Decimal(50)).reason)
    stale = route("buy", Decimal("0.5"), books, fees, now_ms=5000, max_age_ms=1000,
                  max_slippage_bps=Decimal(50))
    assert isinstance(stale, RouteRefusal) and stale.rule == "book_stale"
    legs = split("buy", Decimal("1.5"), books, fees, now_ms=1500, max_age_ms=1000,
                 max_slippage_bps=Decimal(50))
    assert legs == [Leg("b", Decimal(1), Decimal(100_050)), Leg("a", Decimal("0.5"), Decimal(100_000))]
