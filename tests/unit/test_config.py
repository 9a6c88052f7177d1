from __future__ import annotations

from pathlib import Path

import pytest

from titan_actors.config import ConfigError, load_config


def test_defaults_give_a_paper_venue_embedded_nats_and_data_under_dot_data(tmp_path: Path,
                                                                            monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {})
    assert config.source is None
    assert config.venues == {"paper": config.venues["paper"]}
    assert config.venues["paper"]["exchange"] == "paper"
    assert config["nats.url"] == ""
    assert config.data_dir == tmp_path / "data"
    assert config["ipc.socket"] == "/tmp/titan-execution.sock"
    assert config.symbols == ["BTCUSDT", "ETHUSDT"]


def test_titan_toml_in_the_working_directory_is_read_when_no_file_is_named(tmp_path: Path,
                                                                            monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "titan.toml").write_text("[engine]\nlog_level = 'DEBUG'\n")
    config = load_config(None, {})
    assert config["engine.log_level"] == "DEBUG"
    assert config.source == "titan.toml"


def test_environment_variables_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("[ipc]\nsocket = '/tmp/from-file.sock'\n[nats]\nurl = 'nats://file:4222'\n")
    config = load_config(str(path), {
        "TITAN_IPC_SOCKET": "/tmp/from-env.sock", "NATS_URL": "nats://env:4222",
        "TITAN_DATA_DIR": str(tmp_path / "d"), "TITAN_LOG_LEVEL": "WARNING",
        "TITAN_HMAC_SECRET": "s" * 32,
    })
    assert config["ipc.socket"] == "/tmp/from-env.sock"
    assert config["nats.url"] == "nats://env:4222"
    assert config.data_dir == tmp_path / "d"
    assert config["engine.log_level"] == "WARNING"
    assert config["ipc.hmac_secret"] == "s" * 32


LIMITS = "[risk]\nmax_order_notional = 1000\nmax_position_notional = 5000\ndaily_loss_limit = 500\n"


def test_exchange_keys_come_from_the_seed_environment_names(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("[venues.bb]\nexchange = 'bybit'\nsymbols = ['BTCUSDT']\n"
                    "[routing]\ndefault_venue = 'bb'\n" + LIMITS)
    config = load_config(str(path), {"BYBIT_API_KEY": "k", "BYBIT_API_SECRET": "s"})
    assert config.venues["bb"]["api_key"] == "k" and config.venues["bb"]["api_secret"] == "s"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[engine]\nadmin_port = 70000\n", "engine.admin_port"),
        ("[engine]\nfsync = 'maybe'\n", "engine.fsync"),
        ("[supervision]\nperiod_s = 0\n", "supervision.period_s"),
        ("[supervision]\nbackoff_initial_s = 1.0\nbackoff_max_s = 0.5\n", "supervision.backoff_max_s"),
        ("[supervision]\nintensity = true\n", "supervision.intensity"),
        ("[venues.paper]\nmarket = 'options'\n", "venues.paper.market"),
        ("[venues.paper]\nreference_prices = {BTCUSDT = -1}\n", "venues.paper.reference_prices"),
        ("[venues.Bad]\nexchange = 'paper'\n", "venues.Bad"),
        ("[venues.m]\nexchange = 'mexc'\napi_key = 'k'\napi_secret = 's'\nstops = 'native'\n",
         "venues.m.stops"),
        ("[whatever]\nx = 1\n", "whatever"),
        ("engine = 3\n", "engine"),
    ],
)
def test_invalid_values_name_their_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert info.value.key == key
    assert str(info.value).startswith(f"config error: {key}: ")


def test_a_missing_config_file_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config("/nonexistent/titan.toml", {})
