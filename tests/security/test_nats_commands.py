"""Operator commands over NATS: signed over subject and body, once only,
and only with the operator's own secret (shared/spec/nats-subjects.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.support.engine import RunningEngine, wait_for
from tests.support.nats import command, signed
from titan_actors.config import ConfigError, load_config
from titan_actors.wire import subjects
from titan_actors.wire.commands import sign_command


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = RunningEngine(tmp_path_factory.mktemp("nats-commands")).start()
    try:
        yield running
    finally:
        running.stop()
        assert running.leftovers() == []


def _url(engine: RunningEngine) -> str:
    return engine.nats_url


HALT = {"mode": "HALTED", "reason": "drill", "operator": "ops", "scope": "symbol:ETHUSDT"}
RESUME = {"reason": "drill", "operator": "ops", "scope": "symbol:ETHUSDT"}


def test_a_signed_halt_replayed_onto_the_resume_subject_is_refused(shared: RunningEngine) -> None:
    body, headers = signed(subjects.CMD_HALT, {**HALT, **RESUME}, shared.operator_secret)
    assert command(_url(shared), subjects.CMD_RESUME, body, headers) == {"error": "BAD_SIGNATURE"}
    halted = command(_url(shared), subjects.CMD_HALT, body, headers)
    assert halted["states"] == {"symbol:ETHUSDT": "HALTED"}
    resumed = command(_url(shared), subjects.CMD_RESUME, *signed(subjects.CMD_RESUME, RESUME,
                                                                 shared.operator_secret))
    assert resumed["states"] == {}


def test_a_signed_place_replayed_onto_cancel_is_refused(shared: RunningEngine) -> None:
    body, headers = signed(subjects.CMD_PLACE, {"signal_id": "x-subject", "symbol": "BTCUSDT", "side": "buy",
                                                "quantity": 0.01, "order_type": "market"}, shared.secret)
    assert command(_url(shared), subjects.CMD_CANCEL, body, headers) == {"error": "BAD_SIGNATURE"}


def test_a_nonce_seen_within_the_window_is_replayed_even_after_the_bridge_restarts(
        shared: RunningEngine) -> None:
    body, headers = signed(subjects.CMD_HALT, HALT, shared.operator_secret, nonce="nonce-once-0001")
    assert command(_url(shared), subjects.CMD_HALT, body, headers)["trading_state"] == "HALTED"
    assert command(_url(shared), subjects.CMD_HALT, body, headers) == {"error": "REPLAYED"}
    # The same nonce in another (fresh, correctly signed) command is a replay too.
    again, again_headers = signed(subjects.CMD_RESUME, RESUME, shared.operator_secret,
                                  nonce="nonce-once-0001")
    assert command(_url(shared), subjects.CMD_RESUME, again, again_headers) == {"error": "REPLAYED"}
    before = shared.cells()["nats"]
    shared.kill("nats")
    wait_for(lambda: shared.cells().get("nats") not in (None, before), 10, 0.05, "the bridge restarted")
    wait_for(lambda: shared.actor("nats")["detail"]["connected"], 10, 0.05, "the bridge connected")
    assert command(_url(shared), subjects.CMD_HALT, body, headers) == {"error": "REPLAYED"}
    assert shared.actor("risk")["detail"]["states"] == {"symbol:ETHUSDT": "HALTED"}
    command(_url(shared), subjects.CMD_RESUME, *signed(subjects.CMD_RESUME, RESUME, shared.operator_secret))


@pytest.mark.parametrize("nonce", ["short", "x" * 65, "has space!", 12345678])
def test_a_missing_or_malformed_nonce_is_invalid(shared: RunningEngine, nonce: object) -> None:
    for given in ({}, {"nonce": nonce}):
        body = orjson.dumps({**HALT, "ts": time.time_ns() // 1_000_000, **given})
        headers = {"Titan-Signature": sign_command(shared.operator_secret, subjects.CMD_HALT, body)}
        reply = command(_url(shared), subjects.CMD_HALT, body, headers)
        assert reply["error"] == "INVALID" and reply["reason"].startswith("nonce:")
    assert shared.actor("risk")["detail"]["states"] == {}


def test_a_command_with_a_key_twice_is_invalid(shared: RunningEngine) -> None:
    body = (b'{"mode": "REDUCING", "mode": "HALTED", "reason": "r", "operator": "o", "ts": %d, '
            b'"nonce": "dup-key-nonce-1"}' % (time.time_ns() // 1_000_000))
    headers = {"Titan-Signature": sign_command(shared.operator_secret, subjects.CMD_HALT, body)}
    reply = command(_url(shared), subjects.CMD_HALT, body, headers)
    assert reply == {"error": "INVALID", "reason": "mode: appears twice in one object"}
    assert shared.actor("risk")["detail"]["states"] == {}


def test_without_an_operator_secret_operator_subjects_are_disabled_and_orders_still_work(
        tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path)
    engine.env.pop("TITAN_OPERATOR_SECRET")
    engine.start()
    try:
        for subject, body in ((subjects.CMD_HALT, HALT), (subjects.CMD_RESUME, RESUME),
                              (subjects.CMD_STATUS, {})):
            # Signed with the FastPath secret, the one a strategy holds.
            reply = command(_url(engine), subject, *signed(subject, body, engine.secret))
            assert reply == {"error": "DISABLED"}
        placed = command(_url(engine), subjects.CMD_PLACE, *signed(subjects.CMD_PLACE, {
            "signal_id": "disabled-1", "symbol": "BTCUSDT", "side": "buy", "quantity": 0.01,
            "order_type": "market"}, engine.secret))
        assert placed["type"] == "ACCEPTED"
        assert engine.actor("risk")["detail"]["states"] == {}
    finally:
        engine.stop()
    assert engine.leftovers() == []


def test_an_operator_secret_that_is_short_or_the_fastpath_secret_stops_the_start() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_config(env={"TITAN_OPERATOR_SECRET": "short"})
    same = "s" * 40
    with pytest.raises(ConfigError, match="must not be the FastPath secret"):
        load_config(env={"TITAN_OPERATOR_SECRET": same, "TITAN_HMAC_SECRET": same})
