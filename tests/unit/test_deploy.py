from __future__ import annotations

import re
from pathlib import Path

from titan_actors.config import _SCHEMA, _VENUE_SCHEMA, load_config
from titan_actors.domain.risk_rules import Limits, Policy

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_example_titan_toml_is_valid_and_names_every_key() -> None:
    text = (DEPLOY / "titan.toml").read_text()
    config = load_config(str(DEPLOY / "titan.toml"), {})
    assert config.venues["paper"]["exchange"] == "paper"
    present = set(re.findall(r"^([a-z_]+) =", text, flags=re.M))
    expected = {key for section in _SCHEMA.values() for key in section} | set(_VENUE_SCHEMA)
    expected |= {f for f in Policy.__dataclass_fields__ if f not in ("limits", "symbols")}
    expected |= set(Limits.__dataclass_fields__)
    assert expected <= present, f"keys missing from deploy/titan.toml: {sorted(expected - present)}"


def test_the_systemd_unit_restarts_always_and_kills_the_whole_control_group() -> None:
    unit = (DEPLOY / "titan.service").read_text()
    assert "\nRestart=always\n" in unit
    assert "\nKillMode=control-group\n" in unit
    assert "titan run" in unit
