"""The one set of venue errors, for the paper venue and every exchange.

- `VenueRejected`: the venue surely refused; the order is not placed.
- `VenueUnknownOutcome`: no answer that can be trusted; the order may be
  placed: look it up by client order id, never resend blind.
- `VenueUnreachable`: the request surely never reached the venue (its
  connection was refused, the paper venue's simulated outage): nothing was
  placed, and the venue counts as failing.
- `DuplicateClientOrderId`: the venue already has an order with this client
  order id (`order`, when the venue can say which).

Each carries the venue's message in `reason`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DuplicateClientOrderId", "VenueError", "VenueRejected", "VenueUnknownOutcome", "VenueUnreachable"]


class VenueError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VenueRejected(VenueError):
    """The venue refused: the order is not placed."""


class VenueUnknownOutcome(VenueError):
    """No answer we can trust: the order may be placed. Look it up."""


class VenueUnreachable(VenueError):
    """The request never reached the venue: nothing was placed."""


class DuplicateClientOrderId(VenueError):
    """The venue already has an order with this client order id."""

    def __init__(self, reason: str, order: Any = None) -> None:
        super().__init__(reason)
        self.order = order
