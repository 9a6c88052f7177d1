"""Small ones: a signal id is matched in full, and a JSON object with a key
twice is INVALID naming the key, on FastPath (the connection is kept)."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.support.engine import RunningEngine
from titan_actors.domain.signals import parse_request
from titan_actors.wire.fastpath import duplicate_key, encode_frame


@pytest.mark.parametrize("signal_id", ["abc\n", "abc\r\n", "\nabc", "ab c", "x" * 129, ""])
def test_a_signal_id_is_matched_in_full(signal_id: str) -> None:
    now = int(time.time() * 1000)
    refused = parse_request({"type": "CONFIRM", "signal_id": signal_id, "ts": now}, now_ms=now,
                            window_ms=5000, venues={"paper": frozenset({"BTCUSDT"})}, default_venue="paper")
    assert (refused.code, refused.reason.split(":")[0]) == ("INVALID", "signal_id")


@pytest.mark.parametrize(("payload", "key"), [
    (b'{"type": "PING", "type": "PREPARE"}', "type"),
    (b'{"a": {"q": 1, "q": 2}}', "q"),
    (b'{"\\u0071": 1, "q": 2}', "q"),  # the same key spelt with an escape
    (b'{"a": [{"x": 1}, {"x": 2, "x": 3}]}', "x"),
    (b'{"a": "a", "b": "a"}', None),  # a value equal to a key is no repeat
    (b'{"a": {"x": 1}, "b": {"x": 2}}', None),  # the same key in two objects is no repeat
])
def test_duplicate_keys_are_found_at_any_depth(payload: bytes, key: str | None) -> None:
    assert duplicate_key(payload, orjson.loads(payload)) == key


def test_fastpath_answers_invalid_for_a_key_twice_and_keeps_the_connection(engine: RunningEngine) -> None:
    with engine.client() as client:
        now = int(time.time() * 1000)
        payload = (b'{"type": "PREPARE", "signal_id": "dup-1", "symbol": "BTCUSDT", "side": "buy", '
                   b'"quantity": 0.01, "quantity": 100, "order_type": "market", "ts": %d}' % now)
        client.send_raw(encode_frame(engine.secret, payload))
        reply = client.recv_unmatched(5)
        assert (reply["type"], reply["code"]) == ("REJECTED", "INVALID")
        assert reply["reason"] == "quantity: appears twice in one object"
        # Nothing was stored for the signal: a clean PREPARE of it is judged afresh.
        assert client.prepare("dup-1", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
        stale_newline = client.request({"type": "CONFIRM", "signal_id": "dup-1\n"})
        assert (stale_newline["code"], stale_newline["reason"].split(":")[0]) == ("INVALID", "signal_id")


@pytest.mark.parametrize("kind", [{"nested": {}}, ["PREPARE"], 7, None])
def test_a_type_that_is_not_a_string_is_invalid_and_crashes_nothing(
        engine: RunningEngine, kind: object) -> None:
    boots = engine.actor("gateway")["detail"]["boots"]
    with engine.client() as client:
        payload = orjson.dumps({"type": kind, "signal_id": "odd-1", "ts": int(time.time() * 1000)})
        client.send_raw(encode_frame(engine.secret, payload))
        reply = client.recv_unmatched(5)
        assert (reply["type"], reply["code"]) == ("REJECTED", "INVALID")
        assert client.ping()["type"] == "PONG", "the same connection still works"
    assert engine.actor("gateway")["detail"]["boots"] == boots, "the gateway did not crash"
