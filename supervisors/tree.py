"""The engine's supervision tree, built from the configuration.

```
root (one_for_one)
├── nats        NATS bridge
├── risk        risk guard
├── algos       supervisor (one_for_one): algo:<signal> per running algo parent (transient)
├── venues      supervisor (one_for_one): venue:<name> per configured venue
├── positions   supervisor (one_for_one): position:<SYMBOL> per known symbol,
│               more added at run time with `StartChild`
├── ledger      the record of orders, trades and positions the read endpoints answer from
├── http        HTTP listener (spec, webhook, read and operator endpoints), unless `[http] listen = "off"`
└── gateway     IPC gateway
```

Children start in this order and stop in reverse: the gateway, which lets
signals in, is the last up and the first down.
"""

from __future__ import annotations

from typing import Any

from titan_actors.config import Config
from titan_actors.messages import ChildSpec
from titan_actors.runtime.placement import Placement

__all__ = ["ROOT_ROLE", "SUPERVISOR", "expected_roles", "placement_of", "position_spec", "root_config"]

ROOT_ROLE = "root"
SUPERVISOR = "supervisors.supervisor.Supervisor"


def _supervision(config: Config) -> dict[str, Any]:
    return dict(config.sections["supervision"])


def position_spec(symbol: str, venues: dict[str, dict[str, Any]], interval_s: float = 30.0) -> ChildSpec:
    """The child spec of the position actor of `symbol` (also for `StartChild`):
    `venues` maps each venue trading it to its reconciliation settings."""
    return ChildSpec(
        id=f"position:{symbol}",
        actor="titan_actors.actors.position.PositionActor",
        config={"symbol": symbol, "venues": venues, "reconcile_interval_s": interval_s},
    )


def algo_spec(parent: Any, instrument: Any, venue_role: str, vwap_profile: Any = ()) -> ChildSpec:
    """The child spec of the algo actor of a confirmed parent order (for
    `StartChild` to the `algos` supervisor): transient — restarted after a
    crash, not after it ends its schedule."""
    return ChildSpec(
        id=f"algo:{parent.signal_id}",
        actor="titan_actors.actors.algo.AlgoActor",
        restart="transient",
        config={"parent": parent.to_json().decode(), "venue": venue_role, "vwap_profile": list(vwap_profile),
                "instrument": {"qty_step": instrument.qty_step, "tick": instrument.tick,
                               "min_qty": instrument.min_qty, "min_notional": instrument.min_notional}},
    )


def reconcile_settings(venue: dict[str, Any]) -> dict[str, Any]:
    return {"policy": venue["reconcile_policy"], "tolerance": venue["reconcile_tolerance"],
            "spot": venue.get("market") == "spot"}


_ACTOR_MODULES = [
    "titan_actors.actors.gateway", "titan_actors.actors.risk_guard", "titan_actors.actors.position",
    "titan_actors.actors.venue", "titan_actors.actors.nats_bridge", "titan_actors.actors.http",
    "titan_actors.actors.ledger", "titan_actors.actors.algo",
]
#: One adapter for every venue: what differs is its exchange (`venues.exchange.open_exchange`).
_VENUE_ADAPTER = "titan_actors.actors.venue.VenueAdapter"

def root_config(config: Config, *, nats_url: str, gave_up_marker: str,
                nats_auth_file: str = "") -> dict[str, Any]:
    """The `Init.config` of the root supervisor for this engine."""
    sup = _supervision(config)
    venues = [
        ChildSpec(id=f"venue:{name}", actor=_VENUE_ADAPTER,
                  config={"name": name, **venue, "vwap_profile": config["algos.vwap_profile"]})
        for name, venue in config.venues.items()
    ]
    interval = config["positions.reconcile_interval_s"]
    positions = [
        position_spec(symbol, {name: reconcile_settings(v) for name, v in config.venues.items()
                               if symbol in v["symbols"]}, interval)
        for symbol in config.symbols
    ]
    preload_venues = ["ccxt.async_support"] if any(
        v["exchange"] != "paper" for v in config.venues.values()
    ) else []
    children = [
        ChildSpec(id="nats", actor="titan_actors.actors.nats_bridge.NatsBridge",
                  config={**config.sections["nats"], "url": nats_url, "auth_file": nats_auth_file,
                          "hmac_secret": config["ipc.hmac_secret"],
                          "replay_window_ms": config["ipc.replay_window_ms"],
                          "default_venue": config["routing.default_venue"],
                          "venues": {name: v["symbols"] for name, v in config.venues.items()},
                          "symbols": config.symbols}),
        ChildSpec(id="risk", actor="titan_actors.actors.risk_guard.RiskGuard",
                  config={"routing": config.sections["routing"], "policy": config.sections["risk"],
                          "sizing": config.sections["sizing"],
                          # Taker fees for smart routing: configured, else a paper venue's own.
                          "fees": {name: config["routing.fees_bps"].get(
                              name, v["taker_fee_bps"] if v["exchange"] == "paper" else 0)
                              for name, v in config.venues.items()},
                          "references": {name: v["reference_prices"] for name, v in config.venues.items()},
                          "venues": {name: v["symbols"] for name, v in config.venues.items()}}),
        # Before the venues: an adapter restarts the algo actors of its running parents.
        ChildSpec(id="algos", actor=SUPERVISOR, kind="supervisor", shutdown_ms=15000,
                  config={**sup, "children": []}),
        ChildSpec(id="venues", actor=SUPERVISOR, kind="supervisor", shutdown_ms=15000,
                  config={**sup, "children": venues, "preload": preload_venues}),
        ChildSpec(id="positions", actor=SUPERVISOR, kind="supervisor", shutdown_ms=15000,
                  config={**sup, "children": positions}),
        ChildSpec(id="ledger", actor="titan_actors.actors.ledger.Ledger",
                  config={"equity": config["sizing.equity"] or config.sections["risk"].get("equity", 0)}),
        *([ChildSpec(id="http", actor="titan_actors.actors.http.HttpActor",
                     config={**config.sections["http"], "hmac_secret": config["ipc.hmac_secret"],
                             "venues": sorted(config.venues),
                             "expected_roles": sorted(expected_roles(config))})]
          if config["http.listen"] != "off" else []),
        ChildSpec(id="gateway", actor="titan_actors.actors.gateway.IpcGateway",
                  config={**config.sections["ipc"], "routing": config.sections["routing"],
                          "risk_per_trade_pct": config["sizing.risk_per_trade_pct"],
                          "venues": {name: v["symbols"] for name, v in config.venues.items()}}),
    ]
    return {
        **sup,
        "root": True,
        "children": children,
        "gave_up_marker": gave_up_marker,
        # Forked workers inherit these pages: a restarted actor is ready at once.
        "preload": ["nats", *_ACTOR_MODULES],
    }


def placement_of(config: Config) -> Placement:
    """Where each actor runs (`[placement]`)."""
    return Placement(
        profile=config["placement.profile"],
        overrides=dict(config["placement.workers"]),
        exchange_venues=frozenset(name for name, v in config.venues.items() if v["exchange"] != "paper"),
    )


def expected_roles(config: Config) -> set[str]:
    """Every role the tree has once it is fully started."""
    roles = {ROOT_ROLE, "nats", "risk", "algos", "venues", "positions", "ledger", "gateway"}
    if config["http.listen"] != "off":
        roles.add("http")
    roles.update(f"venue:{name}" for name in config.venues)
    roles.update(f"position:{symbol}" for symbol in config.symbols)
    return roles
