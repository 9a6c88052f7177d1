"""NATS subjects of shared/spec/nats-subjects.md, pure."""

from __future__ import annotations

__all__ = [
    "CMD_CANCEL",
    "CMD_CANCEL_ALL",
    "CMD_FLATTEN",
    "CMD_HALT",
    "CMD_HEARTBEAT",
    "CMD_PLACE",
    "CMD_RESUME",
    "CMD_STATUS",
    "COMMANDS",
    "EVENT_SUBJECTS",
    "MARKET_BOOK",
    "MARKET_TICKER",
    "OPERATOR_PREFIX",
    "RISK_STATE",
    "SYSTEM_ACTOR",
    "TRADE_CLOSED",
    "drift",
    "report",
    "truth",
]

CMD_PLACE = "titan.cmd.execution.place.v1"
CMD_CANCEL = "titan.cmd.execution.cancel.v1"
CMD_HALT = "titan.cmd.operator.halt.v1"
CMD_RESUME = "titan.cmd.operator.resume.v1"
CMD_CANCEL_ALL = "titan.cmd.operator.cancel_all.v1"
CMD_FLATTEN = "titan.cmd.operator.flatten.v1"
CMD_STATUS = "titan.cmd.operator.status.v1"
CMD_HEARTBEAT = "titan.cmd.operator.heartbeat.v1"
OPERATOR_PREFIX = "titan.cmd.operator."
COMMANDS = (CMD_PLACE, CMD_CANCEL, CMD_HALT, CMD_RESUME, CMD_STATUS, CMD_CANCEL_ALL, CMD_FLATTEN,
            CMD_HEARTBEAT)

MARKET_TICKER = "titan.data.market.ticker.v1"
MARKET_BOOK = "titan.data.market.book.v1"

RISK_STATE = "titan.evt.risk.state.v1"
SYSTEM_ACTOR = "titan.evt.system.actor.v1"
TRADE_CLOSED = "execution.trade.closed"
#: What the TITAN_EXECUTION stream captures.
EVENT_SUBJECTS = ("titan.evt.>", TRADE_CLOSED)


def report(symbol: str) -> str:
    return f"titan.evt.execution.report.v1.{symbol}"


def truth(symbol: str) -> str:
    return f"titan.evt.execution.truth.v1.{symbol}"


def drift(symbol: str) -> str:
    return f"titan.evt.execution.drift.v1.{symbol}"
