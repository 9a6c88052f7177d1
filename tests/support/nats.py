"""Talking to an engine's nats-server from a test, as any NATS client would."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import nats

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


def read_stream(url: str, subject: str = ">", stream: str = "TITAN_EXECUTION") -> list[dict[str, Any]]:
    """Every message of the stream on `subject`, in stream order, with `subject`."""

    async def run() -> list[dict[str, Any]]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            out: list[dict[str, Any]] = []
            last = info.state.last_seq  # what the stream holds now: a growing stream still ends
            if not info.state.messages:
                return out
            sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
            while True:
                try:
                    msg = await sub.next_msg(1.0)
                except Exception:
                    return out
                if msg.metadata.sequence.stream > last:
                    return out
                out.append({"subject": msg.subject, "msg_id": (msg.headers or {}).get("Nats-Msg-Id"),
                            **json.loads(msg.data)})
                if msg.metadata.sequence.stream >= last:
                    return out
        finally:
            await nc.close()

    return asyncio.run(run())
