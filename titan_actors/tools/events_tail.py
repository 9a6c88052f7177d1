"""`titan events tail`: print the engine's events as they arrive.

Reads the `TITAN_EXECUTION` stream with an ordered (ephemeral) JetStream
consumer per subject filter, one JSON object per line: the envelope plus
`subject` and the stream sequence `stream_seq`. `--since` starts in the past
(`10m`, `2h`, `30s`, an ISO-8601 time, or `all`); without it only new events
are printed.

Failure: `TailError` when no NATS URL can be found or the stream does not
exist (the engine has never connected to that server).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["TailError", "parse_since", "read_stream", "tail"]

_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class TailError(RuntimeError):
    pass


def parse_since(since: str | None, now: dt.datetime | None = None) -> dt.datetime | str | None:
    """None (new only), "all", or a UTC datetime."""
    if since is None:
        return None
    if since == "all":
        return "all"
    now = now or dt.datetime.now(dt.UTC)
    relative = _RELATIVE.fullmatch(since)
    if relative:
        return now - dt.timedelta(seconds=int(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        when = dt.datetime.fromisoformat(since)
    except ValueError:
        raise TailError(f"--since: {since!r} is not 10m / 2h / all / an ISO-8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


async def tail(options: dict[str, Any], subjects: list[str], *, stream: str,
               since: dt.datetime | str | None, count: int | None, timeout: float | None,
               out: TextIO = sys.stdout, on_event: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Print events until `count` were printed or `timeout` seconds passed
    without one (None: forever). Returns how many were printed. `options` are
    nats-py `connect()` arguments (`nats_bridge.connect_options`)."""
    import nats
    from nats.js.api import ConsumerConfig, DeliverPolicy

    from titan_actors.secret import redact_url

    url = redact_url(options["servers"][0])
    nc = await nats.connect(**{**options, "connect_timeout": 3, "name": "titan-events-tail"})
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(stream)
        except Exception as exc:
            raise TailError(f"no stream {stream} on {url}: {exc}") from None
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def deliver(msg: Any) -> None:
            await queue.put(msg)

        for subject in subjects:
            if since is None:
                config, policy = None, DeliverPolicy.NEW
            elif since == "all":
                config, policy = None, DeliverPolicy.ALL
            else:
                config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
                policy = None
            await js.subscribe(subject, stream=stream, cb=deliver, ordered_consumer=True,
                               deliver_policy=policy, config=config)
        printed = 0
        while count is None or printed < count:
            try:
                msg = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                break
            event = {"subject": msg.subject, "stream_seq": msg.metadata.sequence.stream,
                     **json.loads(msg.data)}
            if on_event is not None:
                on_event(event)
            out.write(json.dumps(event) + "\n")
            out.flush()
            printed += 1
        return printed
    finally:
        await nc.close()


async def _quiet(_error: Exception) -> None:
    """Errors of a connection that is read once: the caller sees the result."""


def read_stream(url: str, subject: str = ">", stream: str = "TITAN_EXECUTION") -> list[dict[str, Any]]:
    """Every message the stream holds now on `subject`, in stream order: the
    envelope plus `subject` and `msg_id` (the `Nats-Msg-Id` header). Reads up
    to the stream's last sequence at the call, so a growing stream still ends."""
    import nats

    async def run() -> list[dict[str, Any]]:
        nc = await nats.connect(url, error_cb=_quiet)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            last, out = info.state.last_seq, []
            if not info.state.messages:
                return out
            sub = await js.subscribe(subject, stream=stream, ordered_consumer=True)
            while True:
                try:
                    msg = await sub.next_msg(1.0)
                except Exception:  # nothing more on this subject
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
