"""Trading states, pure: ACTIVE, REDUCING (only orders that reduce a
position), HALTED (no new orders; cancels always pass), set per scope —
`global`, `venue:NAME`, `symbol:SYMBOL` — and combined by taking the most
restrictive one that applies to an order."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SCOPE_PATTERN", "STATES", "SendGate", "effective_state", "send_gate", "valid_scope"]

STATES = ("ACTIVE", "REDUCING", "HALTED")
_RANK = {state: rank for rank, state in enumerate(STATES)}


#: A scope: `global`, `venue:NAME` or `symbol:SYMBOL` (the request models check it with this too).
SCOPE_PATTERN = r"global|(?:venue|symbol):[A-Za-z0-9_./-]{1,64}"


def valid_scope(scope: str) -> bool:
    return re.fullmatch(SCOPE_PATTERN, scope) is not None


def effective_state(states: Mapping[str, str], *, venue: str, symbol: str) -> tuple[str, str]:
    """The state that governs an order on `venue` for `symbol`, and the scope it comes from."""
    best, where = "ACTIVE", "global"
    for scope in ("global", f"venue:{venue}", f"symbol:{symbol}"):
        state = states.get(scope, "ACTIVE")
        if _RANK[state] > _RANK[best]:
            best, where = state, scope
    return best, where


@dataclass(frozen=True, slots=True)
class SendGate:
    """What the venue adapter may do with an order right before sending it:
    `send` (with `reduce_only` forced on where the state requires it),
    `hold` (an exit: kept, sent once the state allows), `refuse` (an entry:
    rejected, never sent) or `busy` (the state is not known yet)."""

    verdict: str
    reason: str = ""
    reduce_only: bool = False


def send_gate(states: Mapping[str, str] | None, *, venue: str, symbol: str, side: str,
              reduce_only: bool, exit_leg: bool, spot: bool, flatten: bool = False) -> SendGate:
    """The trading state checked at the point of sending: an order prepared
    or confirmed before a halt, or an exit placed after a fill, goes out only
    if the state now allows it. REDUCING sends a derivative order as
    reduce-only (the venue then never lets it grow the position) and refuses
    a spot buy (a spot position is only ever long)."""
    if flatten:  # an operator's flatten closes a position whatever the state: it only ever reduces
        return SendGate("send", reduce_only=not spot)  # a spot sell of the engine's coins carries no flag
    if states is None:
        return SendGate("hold" if exit_leg else "busy", "the trading state is not known yet")
    state, scope = effective_state(states, venue=venue, symbol=symbol)
    if state == "HALTED":
        if exit_leg:
            return SendGate("hold", f"trading is halted ({scope}); the exit is sent on resume")
        return SendGate("refuse", f"trading is halted ({scope}); not sent")
    if state == "REDUCING" and not (reduce_only or exit_leg):
        if spot:
            if side == "buy":
                return SendGate("refuse",
                                f"trading is REDUCING ({scope}): a spot buy cannot reduce; not sent")
            return SendGate("send")
        return SendGate("send", reduce_only=True)
    return SendGate("send", reduce_only=reduce_only)
