"""Chaos against an exchange venue: the Bybit fake (its REST API and private
stream, signatures verified), with a kill every 0.5-1.5 s of any role — the
root and the supervisors included, the actor alone or its whole worker —
while signals flow. Bounded: ~15 s of kills, then the checks."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engine import REAL_VENUE_LIMITS, RunningEngine, wait_for
from tests.support.fake_bybit import FakeBybit
from titan_actors.client import FastPathClient
from titan_actors.domain.ids import client_order_id
from titan_actors.tools.chaos import CONFIG

ROLES = ("gateway", "risk", "nats", "http", "venue:bybit", "position:BTCUSDT", "venues", "positions", "root")
KILLS_S = 15.0
FINAL_WITHIN_S = 10.0
NOT_FINAL = ("BUSY", "INTERNAL", "STALE")


def _config(fake: FakeBybit) -> str:
    return CONFIG + REAL_VENUE_LIMITS + f"""
[routing]
default_venue = "bybit"
[venues.bybit]
exchange = "bybit"
market = "linear"
api_key = "test-key"
api_secret = "test-secret"
base_url = "{fake.url}"
ws_base_url = "{fake.ws_url}"
symbols = ["BTCUSDT"]
poll_interval_ms = 200
request_timeout_ms = 800
retry_backoff_ms = 50
"""


@pytest.fixture(params=["packed", "isolated"])
def bybit_engine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[RunningEngine, FakeBybit]]:
    fake = FakeBybit().start()
    engine = RunningEngine(tmp_path, _config(fake))
    engine.env["TITAN_PLACEMENT"] = request.param  # the chaos suite runs under both placements
    try:
        engine.start()
        yield engine, fake
    finally:
        try:
            engine.stop()
        finally:
            fake.stop()
        assert engine.leftovers() == []


def _until_final(engine: RunningEngine, request: Any, deadline: float) -> dict[str, Any] | None:
    """Resend the same request (same signal: never a second order) until its
    answer is final, across every kill: the client's side of the contract."""
    while time.monotonic() < deadline:
        try:
            with FastPathClient(engine.socket, engine.secret, timeout=3) as client:
                reply = request(client)
        except (OSError, TimeoutError, ConnectionError):
            reply = None
        except Exception:  # a reply cut short by a kill
            reply = None
        if reply is not None and not (reply["type"] == "REJECTED" and reply.get("code") in NOT_FINAL):
            return reply
        time.sleep(0.1)
    return None


def _kill_loop(engine: RunningEngine, stop: threading.Event, rng: random.Random,
               kinds: dict[str, int]) -> None:
    while not stop.wait(rng.uniform(0.5, 1.5)):
        role = rng.choice(ROLES)
        whole = rng.random() < 0.5
        try:
            if whole:
                os.kill(engine.pids()[role], signal.SIGKILL)
            else:
                engine.kill(role)
        except Exception:
            continue  # the role (or the engine's status) is restarting: the next kill comes anyway
        kind = f"{role}/{'worker' if whole else 'actor'}"
        kinds[kind] = kinds.get(kind, 0) + 1


def test_kills_of_every_role_against_the_bybit_fake_lose_no_order_duplicate_none_leave_none_unknown(
    bybit_engine: tuple[RunningEngine, FakeBybit],
) -> None:
    engine, fake = bybit_engine
    rng = random.Random(7)
    stop = threading.Event()
    kinds: dict[str, int] = {}
    finals: dict[str, tuple[dict[str, Any] | None, float]] = {}
    sent: list[str] = []

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            signal_id, side = f"cb-{i}", ("buy" if i % 3 else "sell")
            sent.append(signal_id)
            deadline = time.monotonic() + KILLS_S + 30
            prepared = _until_final(engine, lambda c, s=signal_id, d=side: c.prepare(
                s, "BTCUSDT", d, 0.01, ttl_ms=60_000), deadline)
            final = prepared
            if prepared is not None and prepared["type"] == "PREPARED":
                final = _until_final(engine, lambda c, s=signal_id: c.confirm(s), deadline)
            finals[signal_id] = (final, time.monotonic())
            i += 1

    flow = threading.Thread(target=traffic, name="chaos-bybit-traffic")
    killer = threading.Thread(target=_kill_loop, args=(engine, stop, rng, kinds), name="chaos-bybit-killer")
    flow.start()
    killer.start()
    time.sleep(KILLS_S)
    stop.set()
    stopped_at = time.monotonic()
    killer.join(30)
    flow.join(KILLS_S + 40)
    assert not flow.is_alive()

    assert sum(kinds.values()) >= 8, kinds
    assert any(k.startswith(("root/", "venues/", "positions/")) for k in kinds), kinds
    # Every signal got its final answer, within 10 s of the kills stopping.
    unknown = [s for s in sent if finals.get(s, (None, 0.0))[0] is None]
    assert not unknown, f"signals without a final answer: {unknown}"
    late = {s: round(t - stopped_at, 1) for s, (_r, t) in finals.items() if t - stopped_at > FINAL_WITHIN_S}
    assert not late, f"final answers later than {FINAL_WITHIN_S}s after the kills: {late}"
    accepted = {s for s, (r, _t) in finals.items() if r is not None and r["type"] == "ACCEPTED"}
    assert len(accepted) >= 5, finals

    # At the exchange: one order per accepted signal, none of anything else.
    by_coid = {client_order_id(s): s for s in sent}
    at_venue = dict(fake.orders)
    strangers = [c for c in at_venue if c not in by_coid]
    assert not strangers, f"orders at Bybit that no signal made: {strangers}"
    lost = [s for s in accepted if client_order_id(s) not in at_venue]
    assert not lost, f"ACCEPTED but never at Bybit: {lost}"
    refused = {s for s, (r, _t) in finals.items() if r is not None and r["type"] == "REJECTED"}
    assert not [s for s in refused if client_order_id(s) in at_venue
                and at_venue[client_order_id(s)].status != "rejected"], "a refused signal made an order"

    # Once settled, the shadow position equals the venue's, fill for fill.
    def agrees() -> bool:
        try:
            detail = engine.actor("position:BTCUSDT")["detail"]["venues"]["bybit"]
        except Exception:
            return False
        venue_qty = fake.position("BTCUSDT")
        return detail["qty"] == pytest.approx(venue_qty) and detail["fills"] == len(fake.trades)

    wait_for(agrees, 30, 0.2, "the position equal to Bybit's, every fill applied once")
