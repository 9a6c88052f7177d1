"""Placement: which worker process hosts which actor. Pure; no I/O.

A worker is named by a string. Two profiles:

- `packed` (the default): worker `core` hosts the gateway, the risk guard,
  every position actor and the paper venues, so that a FastPath PREPARE and
  CONFIRM never leave one process; worker `nats` hosts the NATS bridge and
  the HTTP listener (the engine's doors to the network, on one loop) and the
  ledger (fed by the bridge, read by the HTTP listener); each
  exchange venue (ccxt: heavy, network-bound) has a worker of its own, named
  after its role.
- `isolated`: one worker per actor, named after its role.

Supervisors always live in the `root` worker: it is the one process that
runs no threads, so it is the one that may fork the other workers (see
docs/design.md, "Workers and placement").

Overrides (`[placement.workers]`) map a role, or a role prefix ending in `*`
(`"position:*"`), to a worker name; the longest matching pattern wins. They
cannot move a supervisor, nor name the `root` worker.

Failure: `PlacementError` for an unknown profile or a bad override.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["PROFILES", "ROOT_WORKER", "Placement", "PlacementError"]

PROFILES = ("packed", "isolated")
ROOT_WORKER = "root"
CORE_WORKER = "core"
NATS_WORKER = "nats"


class PlacementError(ValueError):
    """A placement that cannot be used; `key` names what is wrong."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Placement:
    """`profile`, the overrides, and which venue names are exchanges (ccxt)."""

    profile: str = "packed"
    overrides: Mapping[str, str] = field(default_factory=dict)
    exchange_venues: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise PlacementError("placement.profile", f"must be one of {', '.join(PROFILES)}")
        for pattern, worker in self.overrides.items():
            if not worker or not isinstance(worker, str):
                raise PlacementError(f"placement.workers.{pattern}", "a worker name is a non-empty string")
            if worker == ROOT_WORKER:
                raise PlacementError(f"placement.workers.{pattern}",
                                     "the root worker hosts the supervisors only")

    def worker_for(self, role: str, *, supervisor: bool = False) -> str:
        """The worker that hosts `role`."""
        if supervisor:
            return ROOT_WORKER
        override = self._override(role)
        if override is not None:
            return override
        if self.profile == "isolated":
            return role
        if role in ("nats", "http", "ledger"):  # the network's doors, and the ledger they feed and read
            return NATS_WORKER
        if role.startswith("venue:") and role.removeprefix("venue:") in self.exchange_venues:
            return role
        return CORE_WORKER

    def _override(self, role: str) -> str | None:
        best: tuple[int, str] | None = None
        for pattern, worker in self.overrides.items():
            if pattern == role:
                return worker
            matches = pattern.endswith("*") and role.startswith(pattern[:-1])
            if matches and (best is None or len(pattern) > best[0]):
                best = (len(pattern), worker)
        return best[1] if best else None
