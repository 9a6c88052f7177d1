"""Engine configuration: a TOML file plus environment variables.

Precedence: built-in defaults < the TOML file < environment variables. The
environment names are the seed engine's (`NATS_URL`, `TITAN_IPC_SOCKET`,
`TITAN_HMAC_SECRET`, `TITAN_DATA_DIR`, `TITAN_LOG_LEVEL`,
`<EXCHANGE>_API_KEY` / `<EXCHANGE>_API_SECRET`, ...).

Failure: anything invalid raises `ConfigError(key, reason)` before any
process is started; unknown keys are errors too (a typo must not silently
fall back to a default in a system that trades money).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CONFIG_FILE", "ENV_VARS", "Config", "ConfigError", "load_config"]

DEFAULT_CONFIG_FILE = "titan.toml"
EXCHANGES = ("paper", "bybit", "binance", "mexc")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")
_VENUE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class ConfigError(ValueError):
    """Invalid configuration: `key` is the dotted TOML key (or env variable)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config error: {key}: {reason}")
        self.key = key
        self.reason = reason


Check = Callable[[Any], str | None]


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _port(v: Any) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number (0 = any free port)"


def _listen(v: Any) -> str | None:
    from titan_actors.actors.http import parse_listen

    try:
        parse_listen(v)
    except ValueError as exc:
        return str(exc)
    return None


def _symbols(v: Any) -> str | None:
    for s in v:
        if not isinstance(s, str) or not _SYMBOL.fullmatch(s):
            return f"{s!r} is not an exchange-style symbol like BTCUSDT"
    return None


def _prices(v: Any) -> str | None:
    for sym, price in v.items():
        if not _SYMBOL.fullmatch(sym):
            return f"{sym!r} is not an exchange-style symbol like BTCUSDT"
        if isinstance(price, bool) or not isinstance(price, int | float) or price <= 0:
            return f"price of {sym} must be a number > 0"
    return None


def _worker_overrides(v: Any) -> str | None:
    from titan_actors.runtime.placement import Placement, PlacementError

    for pattern, worker in v.items():
        if not isinstance(worker, str) or not re.fullmatch(r"[A-Za-z0-9_:.-]{1,64}", worker):
            return f"{pattern}: a worker name is 1-64 characters of letters, digits, _ : . -"
        if pattern in ("root", "venues", "positions"):
            return f"{pattern}: supervisors always live in the root worker"
    try:
        Placement(overrides=v)
    except PlacementError as exc:
        return f"{exc.key.removeprefix('placement.workers.')}: {exc.reason}"
    return None


def _secret(env: str) -> Check:
    def check(value: str) -> str | None:
        return None if not value or len(value.encode()) >= 32 else f"must be at least 32 bytes ({env})"
    return check


def _profile(value: list[Any]) -> str | None:
    if len(value) != 24 or not all(isinstance(w, int | float) and not isinstance(w, bool) and w >= 0
                                   for w in value) or not any(value):
        return "24 volume weights (>= 0, not all 0), one per UTC hour"
    return None


def _fees(value: dict[str, Any]) -> str | None:
    for venue, bps in value.items():
        if isinstance(bps, bool) or not isinstance(bps, int | float) or not 0 <= bps <= 1000:
            return f"{venue}: a taker fee in bps (0 to 1000)"
    return None


def _sources(value: list[Any]) -> str | None:
    if not value or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value):
        return "must be a non-empty list of source names (strings of 1-64 characters)"
    return None


# section -> key -> (type, default, check)
_SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], Any, Check | None]]] = {
    "engine": {
        "data_dir": (str, "./data", None),
        "log_level": (str, "INFO", _one_of(*LOG_LEVELS)),
        "log_format": (str, "json", _one_of("json", "plain")),
        "log_file": (str, "", None),
        "log_max_bytes": (int, 50 * 1024 * 1024, _positive),
        "log_backups": (int, 5, _non_negative),
        "admin_port": (int, 0, _port),
        "fsync": (bool, True, None),
        "retention_days": ((int, float), 7, lambda v: None if v >= 1 else "must be >= 1 (replies are kept "
                                                                          "at least 24 hours)"),
        "status_timeout_s": ((int, float), 2.0, _positive),
    },
    "ipc": {
        "socket": (str, "/tmp/titan-execution.sock", None),
        "hmac_secret": (str, "", None),
        "replay_window_ms": (int, 5000, _positive),
        "max_in_flight": (int, 256, _positive),
        "request_timeout_ms": (int, 2000, _positive),
        "max_connections": (int, 256, _positive),
        "idle_timeout_s": ((int, float), 900, _non_negative),
        "partial_frame_timeout_ms": (int, 5000, _positive),
        "max_queued_reply_bytes": (int, 64 * 1024 * 1024, _positive),
    },
    "nats": {
        "url": (str, "", None),
        "embedded_port": (int, 0, _port),
        "embedded_monitor_port": (int, 0, _port),
        "stream": (str, "TITAN_EXECUTION", None),
        "stream_max_age_s": ((int, float), 30 * 86400, _non_negative),
        "stream_max_bytes": (int, 8 * 1024**3, _non_negative),
        "max_events_in_memory": (int, 20_000, _positive),
        "operator_secret": (str, "", None),
        "user": (str, "", None),
        "password": (str, "", None),
        "token": (str, "", None),
        "creds_file": (str, "", None),
        "nkey_seed_file": (str, "", None),
        "tls_ca_file": (str, "", None),
        "tls_cert_file": (str, "", None),
        "tls_key_file": (str, "", None),
    },
    "supervision": {
        "intensity": (int, 5, _non_negative),
        "period_s": ((int, float), 10.0, _positive),
        "backoff_initial_s": ((int, float), 0.05, _positive),
        "backoff_max_s": ((int, float), 2.0, _positive),
        "start_timeout_s": ((int, float), 15.0, _positive),
    },
    "routing": {
        "default_venue": (str, "paper", None),
        "max_book_age_ms": (int, 2000, _positive),
        "max_slippage_bps": ((int, float), 50.0, _non_negative),
        "fees_bps": (dict, {}, _fees),
    },
    "positions": {
        "symbols": (list, [], _symbols),
        "reconcile_interval_s": ((int, float), 30.0, _positive),
    },
    "http": {
        "listen": (str, "127.0.0.1:8470", _listen),
        "webhook_secret": (str, "", _secret("TITAN_WEBHOOK_SECRET")),
        "webhook_sources": (list, ["titan_dashboard"], _sources),
        "api_token": (str, "", _secret("TITAN_API_TOKEN")),
        "operator_token": (str, "", _secret("TITAN_OPERATOR_TOKEN")),
    },
    "algos": {
        "vwap_profile": (list, [1.0] * 24, _profile),
    },
    "sizing": {
        "risk_per_trade_pct": ((int, float), 0.0, lambda v: None if 0 <= v <= 100 else "must be 0 to 100"),
        "equity": ((int, float), 0.0, _non_negative),
    },
    "placement": {
        "profile": (str, "packed", _one_of("packed", "isolated")),
        "workers": (dict, {}, _worker_overrides),
    },
}

_VENUE_SCHEMA: dict[str, tuple[type | tuple[type, ...], Any, Check | None]] = {
    "exchange": (str, "paper", _one_of(*EXCHANGES)),
    "market": (str, "linear", _one_of("linear", "spot")),
    "api_key": (str, "", None),
    "api_secret": (str, "", None),
    "base_url": (str, "", None),
    "testnet": (bool, False, None),
    "symbols": (list, ["BTCUSDT", "ETHUSDT"], _symbols),
    "reference_prices": (dict, {"BTCUSDT": 60000.0, "ETHUSDT": 3000.0}, _prices),
    "latency_ms": (int, 0, _non_negative),
    "slippage_bps": ((int, float), 0.0, _non_negative),
    "taker_fee_bps": ((int, float), 5.5, _non_negative),
    "maker_fee_bps": ((int, float), 2.0, _non_negative),
    "liquidity": ((int, float), 0.0, _non_negative),
    "balance": ((int, float), 100_000.0, _positive),
    "reconcile_policy": (str, "adopt", _one_of("adopt", "halt")),
    "reconcile_tolerance": ((int, float), 1e-9, _non_negative),
    "rate_limit_per_s": ((int, float), 0.0, _non_negative),
    "published_limit_per_s": ((int, float), 0.0, _non_negative),
    "max_queue_wait_ms": (int, 1000, _positive),
    "poll_interval_ms": (int, 1000, _positive),
    "request_timeout_ms": (int, 3000, _positive),
    "retry_backoff_ms": (int, 200, _positive),
    "retry_backoff_max_ms": (int, 5000, _positive),
    "trades_page_size": (int, 0, _non_negative),
    "stream": (bool, True, None),
    "ws_base_url": (str, "", None),
    "stops": (str, "auto", _one_of("auto", "native", "emulated")),
}

ENV_VARS = {
    "TITAN_DATA_DIR": "engine.data_dir",
    "TITAN_LOG_LEVEL": "engine.log_level",
    "TITAN_IPC_SOCKET": "ipc.socket",
    "TITAN_HMAC_SECRET": "ipc.hmac_secret",
    "TITAN_HTTP_LISTEN": "http.listen",
    "TITAN_WEBHOOK_SECRET": "http.webhook_secret",
    "TITAN_API_TOKEN": "http.api_token",
    "TITAN_OPERATOR_TOKEN": "http.operator_token",
    "NATS_URL": "nats.url",
    "TITAN_OPERATOR_SECRET": "nats.operator_secret",
    "NATS_USER": "nats.user",
    "NATS_PASSWORD": "nats.password",
    "NATS_TOKEN": "nats.token",
    "NATS_CREDS": "nats.creds_file",
    "TITAN_PLACEMENT": "placement.profile",
}


@dataclass(frozen=True, slots=True)
class Config:
    """The validated configuration. `sections` holds every section with all
    keys filled in; `venues` maps venue name → its settings."""

    sections: dict[str, dict[str, Any]]
    venues: dict[str, dict[str, Any]]
    source: str | None

    def __getitem__(self, dotted: str) -> Any:
        section, _, key = dotted.partition(".")
        return self.sections[section][key]

    @property
    def data_dir(self) -> Path:
        return Path(self["engine.data_dir"]).expanduser().resolve()

    @property
    def symbols(self) -> list[str]:
        """Every symbol a position actor is started for at engine start."""
        seen = dict.fromkeys(self["positions.symbols"])
        for venue in self.venues.values():
            seen.update(dict.fromkeys(venue["symbols"]))
        return list(seen)

    def as_dict(self) -> dict[str, Any]:
        return {**self.sections, "venues": self.venues}


def _coerce(key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    if kind is bool and isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, f"expected true/false, got {value!r}")
    if isinstance(value, str) and kind in (int, (int, float)):
        try:
            return int(value) if kind is int else float(value)
        except ValueError:
            raise ConfigError(key, f"expected a number, got {value!r}")
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(key, f"expected {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise ConfigError(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return "a number"
    return {str: "a string", int: "an integer", bool: "a boolean", list: "a list",
            dict: "a table"}.get(kind, kind.__name__)


def _fill(prefix: str, given: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    for key in given:
        if key not in schema:
            raise ConfigError(f"{prefix}.{key}", "unknown key")
    out: dict[str, Any] = {}
    for key, (kind, default, check) in schema.items():
        dotted = f"{prefix}.{key}"
        value = _coerce(dotted, given[key], kind) if key in given else default
        if check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(dotted, problem)
        out[key] = value
    return out


def _read_file(path: str | None) -> tuple[dict[str, Any], str | None]:
    if path is None:
        if not Path(DEFAULT_CONFIG_FILE).is_file():
            return {}, None
        path = DEFAULT_CONFIG_FILE
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh), path
    except FileNotFoundError:
        raise ConfigError("--config", f"no such file: {path}")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}")


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for var, dotted in ENV_VARS.items():
        if env.get(var):
            section, _, key = dotted.partition(".")
            raw.setdefault(section, {})[key] = env[var]


#: (exchange, market) where a bracket stop can be held by the venue.
NATIVE_STOPS = {("bybit", "linear"), ("bybit", "spot"), ("binance", "linear")}


def _venues(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    given = raw.pop("venues", None) or {"paper": {"exchange": "paper"}}
    if not isinstance(given, dict):
        raise ConfigError("venues", "expected a table of [venues.<name>] tables")
    venues: dict[str, dict[str, Any]] = {}
    for name, table in given.items():
        if not _VENUE_NAME.fullmatch(name):
            raise ConfigError(f"venues.{name}", "venue names are lowercase letters, digits, - and _")
        if not isinstance(table, dict):
            raise ConfigError(f"venues.{name}", "expected a table")
        venue = _fill(f"venues.{name}", table, _VENUE_SCHEMA)
        exchange = venue["exchange"].upper()
        for field in ("api_key", "api_secret"):
            var = f"{exchange}_{field.upper()}"
            if not venue[field] and env.get(var):
                venue[field] = env[var]
        if venue["exchange"] != "paper" and not (venue["api_key"] and venue["api_secret"]):
            raise ConfigError(
                f"venues.{name}.api_key",
                f"{venue['exchange']} needs api_key and api_secret (or {exchange}_API_KEY and "
                f"{exchange}_API_SECRET)",
            )
        if venue["stops"] == "native" and (venue["exchange"], venue["market"]) not in NATIVE_STOPS:
            raise ConfigError(f"venues.{name}.stops", f"{venue['exchange']} {venue['market']} holds no stops "
                              "this engine follows: use \"emulated\" (or \"auto\")")
        venues[name] = venue
    return venues


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` (or `./titan.toml` if present), apply `env`, validate."""
    env = os.environ if env is None else env
    raw, source = _read_file(path)
    for section in raw:
        if section not in _SCHEMA and section not in ("venues", "risk"):
            raise ConfigError(section, "unknown section")
        if section != "venues" and not isinstance(raw[section], dict):
            raise ConfigError(section, "expected a table")
    risk = _risk(raw.pop("risk", {}))
    _apply_env(raw, env)
    venues = _venues(raw, env)
    _real_money_needs_limits(risk, venues)
    sections = {name: _fill(name, raw.get(name, {}), schema) for name, schema in _SCHEMA.items()}
    default_venue = sections["routing"]["default_venue"]
    for venue in sections["routing"]["fees_bps"]:
        if venue not in venues:
            raise ConfigError(f"routing.fees_bps.{venue}", "not a configured venue")
    if default_venue not in venues:
        raise ConfigError("routing.default_venue", f"{default_venue!r} is not a configured venue")
    secret = sections["ipc"]["hmac_secret"]
    if secret and len(secret.encode()) < 32:
        raise ConfigError("ipc.hmac_secret", "must be at least 32 bytes (TITAN_HMAC_SECRET)")
    operator = sections["nats"]["operator_secret"]
    if operator and len(operator.encode()) < 32:
        raise ConfigError("nats.operator_secret", "must be at least 32 bytes (TITAN_OPERATOR_SECRET)")
    if operator and operator == secret:
        raise ConfigError("nats.operator_secret",
                          "must not be the FastPath secret: a strategy could lift a halt")
    if sections["sizing"]["risk_per_trade_pct"] and not (sections["sizing"]["equity"] or risk.get("equity")):
        raise ConfigError("sizing.equity", "must be set (> 0), or [risk] equity, when risk_per_trade_pct is")
    tokens = [sections["http"]["api_token"], sections["http"]["operator_token"]]
    if all(tokens) and tokens[0] == tokens[1]:
        raise ConfigError("http.operator_token", "must not be the read token: a dashboard could halt trading")
    if sections["supervision"]["backoff_max_s"] < sections["supervision"]["backoff_initial_s"]:
        raise ConfigError("supervision.backoff_max_s", "must be >= backoff_initial_s")
    return Config(sections={**sections, "risk": risk}, venues=venues, source=source)


def _real_money_needs_limits(risk: dict[str, Any], venues: dict[str, dict[str, Any]]) -> None:
    """Risk is never off by default: a venue that trades with credentials
    needs a per-order notional, a position notional (for each of its
    symbols, globally or in `[risk.symbols.X]`) and a daily loss limit.
    Paper venues trade nothing real and need none."""
    from titan_actors.domain.risk_rules import policy_from_config

    real = [name for name, v in venues.items() if v["exchange"] != "paper"]
    if not real:
        return
    policy = policy_from_config(risk)
    for name in real:
        for symbol in venues[name]["symbols"]:
            limits = policy.limits_for(symbol)
            for key in ("max_order_notional", "max_position_notional"):
                if not getattr(limits, key):
                    where = f"risk.symbols.{symbol}.{key}" if symbol in policy.symbols else f"risk.{key}"
                    raise ConfigError(where, f"must be set (> 0): venue {name} trades {symbol} with real "
                                             "credentials, and risk is never off by default")
    if not policy.daily_loss_limit:
        raise ConfigError("risk.daily_loss_limit", f"must be set (> 0): venue {real[0]} trades with real "
                                                   "credentials, and risk is never off by default")


def _risk(raw: dict[str, Any]) -> dict[str, Any]:
    """The `[risk]` table as given (the risk guard builds its policy from it),
    validated now so that a bad limit stops the start."""
    from titan_actors.domain.risk_rules import PolicyError, policy_from_config

    try:
        policy_from_config(raw)
    except PolicyError as exc:
        raise ConfigError(f"risk.{exc.key}", str(exc).split(": ", 1)[1])
    return raw
