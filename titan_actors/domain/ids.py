"""Deterministic identifiers, pure.

The same signal always maps to the same client order id, so a resend can
never become a second order: venues refuse (or let us find) a repeated
client order id. 32 characters of [a-z0-9] fit every venue's field (Bybit
`orderLinkId` ≤ 36, Binance `newClientOrderId` ≤ 36, MEXC ≤ 32).
"""

from __future__ import annotations

import hashlib

__all__ = ["client_order_id", "exit_order_id", "trade_id"]


def client_order_id(signal_id: str) -> str:
    return "tt" + hashlib.sha256(signal_id.encode()).hexdigest()[:30]


def exit_order_id(signal_id: str, leg: str, version: int = 1) -> str:
    """The client order id of a bracket exit (`sl`, `tp1`, `tp2`, ...); a
    venue that cannot amend an order gets a new one per `version`."""
    return client_order_id(f"{signal_id}#{leg}" if version == 1 else f"{signal_id}#{leg}@{version}")


def trade_id(venue_order_id: str, n: int) -> str:
    return f"{venue_order_id}-{n}"
