"""Publishes whose acknowledgements come back on one inbox, against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

from supervisors.embedded_nats import EmbeddedNats
from titan_actors.actors.jetstream import AckedPublisher


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    srv = EmbeddedNats(tmp_path / "js", auth={"user": "t", "password": "p" * 16})
    srv.start()
    yield srv
    srv.stop()


async def _publish_and_collect(url: str, items: list[tuple[Any, str, bytes, dict[str, str]]], *,
                               expect: int, timeout_s: float = 5.0, idle_listener: bool = False,
                               sweep_after: float | None = None) -> tuple[list[tuple[Any, str | None]], int]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="T", subjects=["t.>"], duplicate_window=60.0))
        if idle_listener:
            await nc.subscribe("quiet.>", cb=_ignore)  # takes the message, never answers
        results: list[tuple[Any, str | None]] = []
        done = asyncio.Event()

        def on_results(batch: list[tuple[Any, str | None]]) -> None:
            results.extend(batch)
            if len(results) >= expect:
                done.set()

        publisher = AckedPublisher(nc, on_results=on_results, timeout_s=timeout_s)
        await publisher.start()
        await publisher.publish(items)
        if sweep_after is not None:
            await asyncio.sleep(sweep_after)
            publisher.sweep()
        await asyncio.wait_for(done.wait(), 10)
        info = await js.stream_info("T")
        return results, info.state.messages
    finally:
        await nc.close()


async def _ignore(_msg: Any) -> None:
    return None


def test_every_published_message_is_acknowledged_once_and_stored_once_per_msg_id(
    server: EmbeddedNats,
) -> None:
    items = [(i, f"t.{i % 3}", b"x%d" % i, {"Nats-Msg-Id": f"id-{i}"}) for i in range(200)]
    items.append(("again", "t.0", b"x0", {"Nats-Msg-Id": "id-0"}))  # a re-publish of the first
    results, stored = asyncio.run(_publish_and_collect(server.client_url, items, expect=201))
    assert sorted(k for k, error in results if error is None and k != "again") == list(range(200))
    assert ("again", None) in results  # a duplicate is acknowledged, not refused
    assert len(results) == 201
    assert stored == 200


def test_a_subject_no_stream_listens_on_is_reported_as_an_error(server: EmbeddedNats) -> None:
    items = [("lost", "nowhere.x", b"x", {"Nats-Msg-Id": "n1"}), ("kept", "t.x", b"y", {})]
    results, stored = asyncio.run(_publish_and_collect(server.client_url, items, expect=2))
    errors = dict(results)
    assert errors["kept"] is None
    assert errors["lost"] == "no stream listens on this subject"
    assert stored == 1


def test_an_answer_that_never_comes_is_reported_as_timed_out_by_the_sweep(server: EmbeddedNats) -> None:
    results, _stored = asyncio.run(_publish_and_collect(
        server.client_url, [("silent", "quiet.x", b"x", {})], expect=1, timeout_s=0.2, idle_listener=True,
        sweep_after=0.4))
    assert results == [("silent", "no acknowledgement within 0.2 s")]
