"""What the operator doors share: the NATS operator subjects (the bridge)
and the HTTP operator endpoints (the HTTP actor).

`operator_command(kind, body, venues)` checks a halt, resume, cancel-all or
flatten body against its model (`wire.api`) and names the scope;
`KillSwitchRounds` fans a cancel-all or flatten out to every venue adapter
of the scope and gathers their answers into one reply: at once when all
answered, or at the deadline with those that did and the others named
`unanswered` (an adapter that is restarting cannot answer; what it did is
in its order events).

Failure: a body that fails its model is an `OperatorRefusal` with the
field and reason; nothing is sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from titan_actors.messages import (
    CancelOpenOrders,
    FlattenPositions,
    HeartbeatArmed,
    OpenOrdersCanceled,
    PositionsFlattened,
    TradingStateSet,
)
from titan_actors.wire.api import OPERATOR_MODELS

__all__ = [
    "OPERATOR_ANSWERS",
    "KillSwitchRounds",
    "OperatorCommand",
    "OperatorRefusal",
    "operator_answer",
    "operator_command",
]

#: What the engine answers an operator command with (`operator_answer` reads them).
OPERATOR_ANSWERS = (TradingStateSet, HeartbeatArmed, OpenOrdersCanceled, PositionsFlattened)


@dataclass(frozen=True, slots=True)
class OperatorCommand:
    kind: str  # halt | resume | cancel_all | flatten
    scope: str
    mode: str  # HALTED | REDUCING | ACTIVE ("" for the kill switches)
    reason: str
    operator: str


@dataclass(frozen=True, slots=True)
class OperatorRefusal:
    reason: str


def operator_command(kind: str, body: dict[str, Any], venues: frozenset[str] | set[str], *,
                     default_operator: str = "") -> OperatorCommand | OperatorRefusal:
    """`body` of a `kind` command, checked. `default_operator` stands in
    for a missing `operator` (the HTTP endpoints, whose token says who)."""
    if default_operator and "operator" not in body:
        body = {**body, "operator": default_operator}
    problem = OPERATOR_MODELS[kind].problem(body)
    if problem is not None:
        return OperatorRefusal(problem)
    scope = body.get("scope", "global")
    kind_of, _, name = scope.partition(":")
    if kind_of == "venue" and name not in venues:
        return OperatorRefusal(f"scope: no venue {name}")
    mode = body.get("mode", "") if kind == "halt" else "ACTIVE" if kind == "resume" else ""
    return OperatorCommand(kind, scope, mode, body["reason"], body["operator"])


class KillSwitchRounds:
    """Cancel-all and flatten rounds in progress, by correlation id."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.rounds: dict[str, dict[str, Any]] = {}

    def start(self, actor: Any, corr: str, command: OperatorCommand, venues: list[str]) -> None:
        """Ask every adapter of the command's scope (`venues`: all configured)."""
        kind, _, name = command.scope.partition(":")
        asked = [name] if kind == "venue" else sorted(venues)
        self.rounds[corr] = {"scope": command.scope, "asked": asked, "venues": {},
                             "deadline": time.monotonic() + self.timeout_s}
        message = (FlattenPositions if command.kind == "flatten" else CancelOpenOrders)(
            command.scope, command.reason, command.operator, corr)
        for venue in asked:
            actor.tell(f"venue:{venue}", message)  # one that is restarting is named as unanswered

    def answered(self, msg: OpenOrdersCanceled | PositionsFlattened) -> tuple[str, dict[str, Any]] | None:
        """(corr, reply) once every adapter asked has answered."""
        waiting = self.rounds.get(msg.corr)
        if waiting is None:
            return None
        waiting["venues"][msg.venue] = msg.summary()
        if set(waiting["venues"]) >= set(waiting["asked"]):
            return msg.corr, self._reply(msg.corr)
        return None

    def expired(self) -> list[tuple[str, dict[str, Any]]]:
        """(corr, reply) of every round past its deadline: what those that answered did."""
        now = time.monotonic()
        return [(corr, self._reply(corr)) for corr in
                [c for c, r in self.rounds.items() if r["deadline"] <= now]]

    def _reply(self, corr: str) -> dict[str, Any]:
        waiting = self.rounds.pop(corr)
        return {"scope": waiting["scope"], "venues": waiting["venues"],
                "unanswered": [v for v in waiting["asked"] if v not in waiting["venues"]]}


def operator_answer(msg: Any, rounds: KillSwitchRounds) -> tuple[str, dict[str, Any]] | None:
    """(corr, reply object) of an `OPERATOR_ANSWERS` message, as both doors
    answer it; None while a kill switch still waits for other adapters."""
    if isinstance(msg, TradingStateSet):
        return msg.corr, {"trading_state": msg.trading_state, "scope": msg.scope, "states": msg.states,
                          "unconfirmed": list(msg.unconfirmed)}
    if isinstance(msg, HeartbeatArmed):
        return msg.corr, ({"error": "INVALID", "reason": msg.error} if msg.error else {
            "scope": msg.scope, "timeout_ms": msg.timeout_ms, "deadline": msg.deadline or None})
    return rounds.answered(msg)
