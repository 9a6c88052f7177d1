"""Talking to an engine's nats-server from a test, as any NATS client would."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import nats

from titan_actors.tools.events_tail import read_stream

__all__ = ["command", "read_stream", "signed"]


def signed(body: dict[str, Any], secret: bytes, *, ts: int | None = None) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps({"ts": time.time_ns() // 1_000_000 if ts is None else ts, **body}).encode()
    return payload, {"Titan-Signature": hmac.new(secret, payload, hashlib.sha256).hexdigest()}


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
