"""Trading states, pure: ACTIVE, REDUCING (only orders that reduce a
position), HALTED (no new orders; cancels always pass), set per scope —
`global`, `venue:NAME`, `symbol:SYMBOL` — and combined by taking the most
restrictive one that applies to an order."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["STATES", "effective_state", "valid_scope"]

STATES = ("ACTIVE", "REDUCING", "HALTED")
_RANK = {state: rank for rank, state in enumerate(STATES)}


def valid_scope(scope: str) -> bool:
    kind, _, name = scope.partition(":")
    return scope == "global" or (kind in ("venue", "symbol") and bool(name) and ":" not in name)


def effective_state(states: Mapping[str, str], *, venue: str, symbol: str) -> tuple[str, str]:
    """The state that governs an order on `venue` for `symbol`, and the scope it comes from."""
    best, where = "ACTIVE", "global"
    for scope in ("global", f"venue:{venue}", f"symbol:{symbol}"):
        state = states.get(scope, "ACTIVE")
        if _RANK[state] > _RANK[best]:
            best, where = state, scope
    return best, where
