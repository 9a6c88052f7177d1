from __future__ import annotations

import pytest

from supervisors.policy import Intensity, backoff_delay, restart_scope, should_restart


@pytest.mark.parametrize(
    ("restart", "normal", "expected"),
    [
        ("permanent", False, True), ("permanent", True, True),
        ("transient", False, True), ("transient", True, False),
        ("temporary", False, False), ("temporary", True, False),
    ],
)
def test_restart_types_follow_otp(restart: str, normal: bool, expected: bool) -> None:
    assert should_restart(restart, normal_exit=normal) is expected


def test_an_unknown_restart_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="restart type"):
        should_restart("sometimes", normal_exit=False)


def test_strategies_choose_which_children_restart() -> None:
    order = ["a", "b", "c", "d"]
    assert restart_scope("one_for_one", order, "b") == ["b"]
    assert restart_scope("one_for_all", order, "b") == order
    assert restart_scope("rest_for_one", order, "b") == ["b", "c", "d"]
    assert restart_scope("rest_for_one", order, "d") == ["d"]
    with pytest.raises(ValueError):
        restart_scope("all_for_none", order, "a")


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    delays = [backoff_delay(n, initial_s=0.05, max_s=0.3) for n in range(6)]
    assert delays == [0.0, 0.05, 0.1, 0.2, 0.3, 0.3]


def test_intensity_allows_r_restarts_in_t_seconds_and_refuses_the_next() -> None:
    window = Intensity(3, 10.0)
    assert [window.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert window.record(3.0) is False


def test_intensity_forgets_restarts_older_than_the_period() -> None:
    window = Intensity(2, 10.0)
    assert window.record(0.0) and window.record(5.0)
    assert window.record(10.5) is True  # the one at 0.0 has left the window
    assert len(window) == 2


def test_intensity_zero_gives_up_on_the_first_restart() -> None:
    assert Intensity(0, 1.0).record(0.0) is False
