"""Placement: which worker hosts which role (pure)."""

from __future__ import annotations

import pytest

from titan_actors.config import ConfigError, load_config
from titan_actors.runtime.placement import Placement, PlacementError


def test_packed_puts_the_signal_path_in_core_nats_apart_and_each_exchange_venue_in_its_own_worker() -> None:
    placement = Placement(profile="packed", exchange_venues=frozenset({"bybit"}))
    assert {role: placement.worker_for(role) for role in (
        "gateway", "risk", "position:BTCUSDT", "venue:paper", "nats", "venue:bybit")} == {
        "gateway": "core", "risk": "core", "position:BTCUSDT": "core", "venue:paper": "core",
        "nats": "nats", "venue:bybit": "venue:bybit"}


def test_isolated_gives_every_actor_a_worker_of_its_own_and_supervisors_stay_in_root() -> None:
    placement = Placement(profile="isolated")
    assert placement.worker_for("risk") == "risk"
    assert placement.worker_for("position:ETHUSDT") == "position:ETHUSDT"
    assert placement.worker_for("positions", supervisor=True) == "root"
    assert Placement(profile="packed").worker_for("venues", supervisor=True) == "root"


def test_an_override_by_role_wins_over_a_prefix_and_the_longest_prefix_wins() -> None:
    placement = Placement(overrides={"position:*": "books", "position:BTC*": "btc", "position:ETHUSDT": "eth",
                                     "venue:bybit": "core"}, exchange_venues=frozenset({"bybit"}))
    assert placement.worker_for("position:BTCUSDT") == "btc"
    assert placement.worker_for("position:ETHUSDT") == "eth"
    assert placement.worker_for("position:SOLUSDT") == "books"
    assert placement.worker_for("venue:bybit") == "core"
    assert placement.worker_for("positions", supervisor=True) == "root", "supervisors are never moved"


def test_a_bad_profile_or_an_override_naming_the_root_worker_is_refused() -> None:
    with pytest.raises(PlacementError, match=r"placement\.profile"):
        Placement(profile="spread")
    with pytest.raises(PlacementError, match="root worker"):
        Placement(overrides={"risk": "root"})


def test_the_config_takes_the_profile_from_the_environment_and_names_a_bad_key(tmp_path) -> None:
    assert load_config(None, {"TITAN_PLACEMENT": "isolated"})["placement.profile"] == "isolated"
    assert load_config(None, {})["placement.profile"] == "packed"
    with pytest.raises(ConfigError, match=r"placement\.profile"):
        load_config(None, {"TITAN_PLACEMENT": "spread"})
    bad = tmp_path / "t.toml"
    bad.write_text('[placement]\nworkers = { "positions" = "core" }\n')
    with pytest.raises(ConfigError, match=r"placement\.workers: positions: supervisors"):
        load_config(str(bad), {})
