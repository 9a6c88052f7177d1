"""Risk is never off by default: a venue with real credentials does not
start without per-order notional, position and daily-loss limits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.engine import FAST_SUPERVISION, RunningEngine, titan_cmd
from titan_actors.config import ConfigError, load_config

BYBIT = """
[routing]
default_venue = "bb"
[venues.bb]
exchange = "bybit"
symbols = ["BTCUSDT", "ETHUSDT"]
"""
KEYS = {"BYBIT_API_KEY": "k", "BYBIT_API_SECRET": "s"}


def _load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "titan.toml"
    path.write_text(text)
    load_config(str(path), KEYS)


@pytest.mark.parametrize(("risk", "named"), [
    ("", "risk.max_order_notional"),
    ("[risk]\nmax_order_notional = 1000\n", "risk.max_position_notional"),
    ("[risk]\nmax_order_notional = 1000\nmax_position_notional = 5000\n", "risk.daily_loss_limit"),
    ("[risk]\nmax_position_notional = 5000\ndaily_loss_limit = 100\n[risk.symbols.BTCUSDT]\n"
     "max_order_notional = 1000\n", "risk.max_order_notional"),  # ETHUSDT has none
])
def test_a_real_venue_without_a_limit_is_a_config_error_naming_it(
        tmp_path: Path, risk: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, BYBIT + risk)
    assert caught.value.key == named and "real credentials" in caught.value.reason


def test_limits_globally_or_per_symbol_let_it_start(tmp_path: Path) -> None:
    _load(tmp_path, BYBIT + "[risk]\nmax_order_notional = 1000\nmax_position_notional = 5000\n"
                            "daily_loss_limit = 100\n")
    _load(tmp_path, BYBIT + "[risk]\ndaily_loss_limit = 100\n"
                            "[risk.symbols.BTCUSDT]\nmax_order_notional = 1\nmax_position_notional = 2\n"
                            "[risk.symbols.ETHUSDT]\nmax_order_notional = 1\nmax_position_notional = 2\n")


def test_titan_run_refuses_with_exit_2_and_paper_needs_no_limits(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION + BYBIT)
    run = subprocess.run(titan_cmd("run", "--config", str(engine.config)), env={**engine.env, **KEYS},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "titan: config error: risk.max_order_notional: must be set (> 0)" in run.stderr
    assert not (engine.data_dir / "run" / "engine.json").exists()
    (tmp_path / "paper").mkdir()
    paper = RunningEngine(tmp_path / "paper").start()
    try:
        with paper.client() as client:
            assert client.prepare("no-limits", "BTCUSDT", "buy", 1)["type"] == "PREPARED"
    finally:
        paper.stop()
    assert paper.leftovers() == []
