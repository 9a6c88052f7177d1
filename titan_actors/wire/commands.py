"""Signed NATS commands (shared/spec/nats-subjects.md, "Commands"), pure.

Header `Titan-Signature` = hex HMAC-SHA256(secret, subject + "\\n" + body): a
body signed for one subject is refused on any other. The body carries `ts`
(ms since the Unix epoch) and `nonce` (8-64 of `[A-Za-z0-9_-]`). `ReplayGuard`
remembers the nonces of the replay window; the owner persists them.

Failure: `verify_command` returns a `CommandError` (code as on the wire,
`reason` for INVALID); it never raises on anything a sender can put in a
message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from titan_actors.domain.money import json_default
from titan_actors.runtime.clock import now_ms
from titan_actors.wire.fastpath import duplicate_key

__all__ = [
    "SIGNATURE_HEADER",
    "CommandError",
    "ReplayGuard",
    "sign_command",
    "signed_command",
    "verify_command",
]

SIGNATURE_HEADER = "Titan-Signature"
_NONCE = re.compile(r"[A-Za-z0-9_-]{8,64}")


@dataclass(frozen=True, slots=True)
class CommandError:
    """A refused command: `{"error": code}` plus `reason` where there is one."""

    code: str
    reason: str = ""

    def reply(self) -> dict[str, Any]:
        return {"error": self.code, "reason": self.reason} if self.reason else {"error": self.code}


def sign_command(secret: bytes, subject: str, body: bytes) -> str:
    return hmac.new(secret, subject.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def signed_command(secret: bytes, subject: str, fields: Mapping[str, Any], *, ts: int | None = None,
                   nonce: str | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a command, as any client would build them."""
    body = orjson.dumps({**fields, "ts": now_ms() if ts is None else ts,
                         "nonce": secrets.token_hex(12) if nonce is None else nonce}, default=json_default)
    return body, {SIGNATURE_HEADER: sign_command(secret, subject, body)}


def verify_command(subject: str, body: bytes, headers: Mapping[str, Any], *, secret: bytes | None,
                   now_ms: int, window_ms: int) -> dict[str, Any] | CommandError:
    """The command's JSON object, or why it is refused. `secret` None means
    the subject's secret is not configured (`DISABLED`)."""
    if secret is None:
        return CommandError("DISABLED")
    given = headers.get(SIGNATURE_HEADER, "")
    if not isinstance(given, str) or not hmac.compare_digest(
            sign_command(secret, subject, body).encode(), given.lower().encode()):
        return CommandError("BAD_SIGNATURE")
    try:
        command = orjson.loads(body)
    except orjson.JSONDecodeError:
        return CommandError("INVALID", "the body is not JSON")
    if not isinstance(command, dict):
        return CommandError("INVALID", "the body is not a JSON object")
    twice = duplicate_key(body, command)
    if twice is not None:
        return CommandError("INVALID", f"{twice}: appears twice in one object")
    ts = command.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        return CommandError("INVALID", "ts: must be an integer (ms since the Unix epoch)")
    nonce = command.get("nonce")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        return CommandError("INVALID", "nonce: must be 8-64 characters of A-Za-z0-9_-")
    if abs(now_ms - ts) > window_ms:
        return CommandError("STALE")
    return command


class ReplayGuard:
    """Nonces seen within the replay window. A nonce is kept until its
    command's `ts` is out of the window, after which the command is `STALE`
    anyway, so memory is bounded by the rate of valid commands."""

    __slots__ = ("_seen", "window_ms")

    def __init__(self, window_ms: int, seen: Mapping[str, int] | None = None) -> None:
        self.window_ms = window_ms
        self._seen: dict[str, int] = dict(seen or {})

    def first_time(self, nonce: str, ts: int) -> bool:
        """True, and remembered, the first time; False for a replay."""
        if nonce in self._seen:
            return False
        self._seen[nonce] = ts
        return True

    def expired(self, now_ms: int) -> list[str]:
        """Forget (and return) the nonces whose command can no longer pass the window."""
        gone = [n for n, ts in self._seen.items() if ts < now_ms - self.window_ms]
        for nonce in gone:
            del self._seen[nonce]
        return gone

    def __len__(self) -> int:
        return len(self._seen)
