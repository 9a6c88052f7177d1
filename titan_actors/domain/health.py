"""The engine's health verdict, pure: can it take an order now?

Computed from one status round of the tree (what `titan status` shows: each
actor's role, state and detail, and the roles that did not answer) by
`titan status` (`ready`, `--check`) and the HTTP `/health` alike, so the two
never disagree. Ready means: every actor the tree should have answered and
is running, the NATS bridge is connected, the gateway serves its socket,
every venue adapter can reach its venue, and every position is reconciled
with each venue it trades on. A halt is an operator's decision, not a fault:
it is shown (`trading`) but does not make the engine unhealthy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Health", "health", "venue_reachable"]


@dataclass(frozen=True, slots=True)
class Health:
    """`ready`; `components` maps each part to `{"ok": bool, ...}` with a
    `reason` when it is not ok."""

    ready: bool
    components: dict[str, dict[str, Any]] = field(default_factory=dict)


def _ok(**extra: Any) -> dict[str, Any]:
    return {"ok": True, **extra}


def _failing(reason: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "reason": reason, **extra}


def health(actors: Sequence[Mapping[str, Any]], missing: Collection[str],
           expected: Collection[str]) -> Health:
    """The verdict over `actors` (dicts with `role`, `state`, `detail`), the
    roles that did not answer (`missing`) and the roles the tree should have."""
    by_role = {a["role"]: a for a in actors}
    components: dict[str, dict[str, Any]] = {}
    absent = sorted(set(missing) | (set(expected) - set(by_role)))
    not_running = sorted(r for r, a in by_role.items() if a.get("state") not in ("running", None))
    if absent or not_running:
        components["actors"] = _failing(
            "; ".join(filter(None, [absent and f"not answering (restarting?): {', '.join(absent)}",
                                    not_running and f"not running: {', '.join(not_running)}"])))
    else:
        components["actors"] = _ok(count=len(by_role))
    nats = by_role.get("nats", {}).get("detail", {})
    # The error text is not repeated: a client's error may name its server with credentials.
    components["nats"] = _ok() if nats.get("connected") else _failing("not connected to NATS")
    gateway = by_role.get("gateway", {}).get("detail", {})
    components["gateway"] = _ok() if gateway.get("serving") else _failing("the FastPath socket is not served")
    for role, actor in sorted(by_role.items()):
        if role.startswith("venue:"):
            components[role] = venue_reachable(actor.get("detail", {}))
    unreconciled = sorted(
        f"{role.removeprefix('position:')} on {venue}"
        for role, actor in by_role.items() if role.startswith("position:")
        for venue, result in (actor.get("detail", {}).get("reconciled") or {}).items()
        if not result or result.get("result") == "venue unavailable")
    components["reconciled"] = _failing(f"not reconciled: {', '.join(unreconciled)}") if unreconciled \
        else _ok()
    risk = by_role.get("risk", {}).get("detail", {})
    if risk.get("rebuilding"):
        components["risk"] = _failing("rebuilding its view of the positions")
    else:
        components["risk"] = _ok(trading=risk.get("states", {}))
    return Health(all(c["ok"] for c in components.values()), components)


def venue_reachable(detail: Mapping[str, Any]) -> dict[str, Any]:
    """A venue adapter's status detail → `{"ok": ...}` (and why not): paper not
    in an outage, an exchange's connection `ready`."""
    if detail.get("down"):
        return _failing("the venue is down")
    connection = detail.get("connection")
    if connection is not None and connection != "ready":
        return _failing(f"exchange connection: {connection or 'not ready'}")
    return _ok()
