"""Talking to an engine's nats-server from a test, as any NATS client would."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats

from titan_actors.tools.events_tail import read_stream
from titan_actors.wire.commands import signed_command

__all__ = ["command", "read_stream", "signed"]


def signed(subject: str, body: dict[str, Any], secret: bytes, *, ts: int | None = None,
           nonce: str | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers signed for `subject`, as shared/spec/nats-subjects.md says."""
    return signed_command(secret, subject, body, ts=ts, nonce=nonce)


def command(url: str, subject: str, body: bytes, headers: dict[str, str] | None,
            timeout: float = 8.0) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        nc = await nats.connect(url)
        try:
            msg = await nc.request(subject, body, headers=headers, timeout=timeout)
            return json.loads(msg.data)
        finally:
            await nc.close()

    return asyncio.run(run())
