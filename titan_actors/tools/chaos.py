"""`titan chaos`: kill actors under load and check every invariant.

Starts an engine (paper venue, embedded NATS) in a temp dir, drives FastPath
PREPARE/CONFIRM/ABORT/CANCEL traffic, NATS place commands and a market-data
feed, halts one symbol for a while, and SIGKILLs a random process of the
engine on a schedule — every role, the supervisors and the root included,
and the nats-server. Then it lets the engine settle and checks:

- every request got a final reply (resent after INTERNAL, BUSY or a lost
  connection, as the spec says clients do) within 30 s;
- no signal produced two orders at the venue;
- every order the venue holds is known to the engine's journal, and the reverse;
- every position actor equals the venue's position and the sum of its fills;
- every fill is in the JetStream stream exactly once, and `seq` has no gap
  per source;
- the halt was never violated (no PREPARE sent during it was PREPARED, no
  order of that symbol was placed during it);
- restarts and time to recover per role (p50 / max).

Each check prints PASS or FAIL with figures; any FAIL makes the exit code 1.
Seeded: the same seed chooses the same operations and victims.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import secrets
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from titan_actors.client import ConnectionClosed, FastPathClient, FastPathError
from titan_actors.runtime.clock import now_ms
from titan_actors.secret import nats_client_url
from titan_actors.tools.events_tail import read_stream
from titan_actors.wire import subjects
from titan_actors.wire.commands import signed_command

__all__ = ["ChaosResult", "run_chaos"]

DEFAULT_ROLES = ("gateway", "risk", "nats", "venue:paper", "position:BTCUSDT", "position:ETHUSDT",
                 "venues", "positions", "root", "nats-server")
HALTED_SYMBOL = "ETHUSDT"
CONFIG = """
[engine]
log_level = "WARNING"
[supervision]
intensity = 200
period_s = 10
backoff_initial_s = 0.02
backoff_max_s = 0.5
[ipc]
request_timeout_ms = 1500
[positions]
reconcile_interval_s = 2.0
"""
RESOLVE_S = 30.0


@dataclass
class Check:
    name: str
    ok: bool
    figures: str


@dataclass
class ChaosResult:
    checks: list[Check] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, figures: str) -> None:
        self.checks.append(Check(name, ok, figures))

    def text(self) -> str:
        lines = [f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.figures}" for c in self.checks]
        lines.append(f"{'PASS' if self.ok else 'FAIL'}  overall ({len(self.checks)} checks)")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.__dict__ for c in self.checks], "stats": self.stats}


# --- traffic ------------------------------------------------------------------------------


class _Traffic:
    """FastPath signals, resent like a well-behaved client until final."""

    def __init__(self, socket_path: str, secret: bytes, rng: random.Random, rate: float) -> None:
        self.socket_path, self.secret, self.rng, self.rate = socket_path, secret, rng, rate
        self.client: FastPathClient | None = None
        self.attempts: list[tuple[str, str, str, float, str]] = []  # signal, type, symbol, sent, outcome
        self.unresolved: list[tuple[str, str]] = []
        self.signals: dict[str, dict[str, Any]] = {}
        self.replies = 0
        self.halt_window: tuple[float, float] | None = None

    def _client(self) -> FastPathClient:
        if self.client is None:
            self.client = FastPathClient(self.socket_path, self.secret, timeout=3.0).connect()
        return self.client

    def request(self, msg: dict[str, Any], symbol: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + RESOLVE_S
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                reply = self._client().request(dict(msg))
            except (ConnectionClosed, FastPathError, OSError, TimeoutError):
                self.attempts.append((msg["signal_id"], msg["type"], symbol, sent, "lost"))
                with contextlib.suppress(Exception):
                    if self.client is not None:
                        self.client.close()
                self.client = None
                time.sleep(0.05)
                continue
            outcome = reply.get("code") or reply["type"]
            self.attempts.append((msg["signal_id"], msg["type"], symbol, sent, outcome))
            if outcome in ("INTERNAL", "BUSY"):
                time.sleep(0.05)
                continue
            self.replies += 1
            return reply
        self.unresolved.append((msg["signal_id"], msg["type"]))
        return None

    def one_signal(self, n: int) -> None:
        symbol = self.rng.choice(("BTCUSDT", "ETHUSDT"))
        signal_id = f"chaos-{n}"
        kind = self.rng.choices(("fill", "abort", "rest"), weights=(8, 1, 1))[0]
        side = self.rng.choice(("buy", "sell"))
        prepare = {"type": "PREPARE", "signal_id": signal_id, "symbol": symbol, "side": side,
                   "quantity": 0.001, "order_type": "market"}
        if kind == "rest":
            reference = 60000.0 if symbol == "BTCUSDT" else 3000.0
            prepare.update(order_type="limit", price=reference * (0.97 if side == "buy" else 1.03))
        self.signals[signal_id] = {"symbol": symbol, "kind": kind}
        reply = self.request(prepare, symbol)
        if reply is None or reply["type"] != "PREPARED":
            return
        follow = "ABORT" if kind == "abort" else "CONFIRM"
        reply = self.request({"type": follow, "signal_id": signal_id}, symbol)
        if kind == "rest" and reply is not None and reply["type"] == "ACCEPTED":
            self.request({"type": "CANCEL", "signal_id": signal_id}, symbol)

    def run(self, stop: threading.Event) -> None:
        n = 0
        started = time.monotonic()
        while not stop.is_set():
            self.one_signal(n)
            n += 1
            pause = started + n / self.rate - time.monotonic()
            if pause > 0:
                stop.wait(pause)
        if self.client is not None:
            self.client.close()


async def _quiet(_error: Exception) -> None:
    """The server is killed on purpose: its errors are expected, not news."""


def _nats_side(url_of: Any, secret: bytes, rng: random.Random, stop: threading.Event,
               placed: list[tuple[str, str]]) -> None:
    """NATS place commands (a few a second) and a market-data feed (20 ticks a second)."""
    import nats

    async def run() -> None:
        prices = {"BTCUSDT": 60000.0, "ETHUSDT": 3000.0}
        nc = None
        n = 0
        while not stop.is_set():
            try:
                if nc is None or nc.is_closed:
                    nc = await nats.connect(url_of(), max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                                            connect_timeout=1, error_cb=_quiet)
                for symbol, price in prices.items():
                    prices[symbol] = price * (1 + rng.uniform(-0.0005, 0.0005))
                    price = prices[symbol]
                    body = json.dumps({"symbol": symbol, "bid": price - 0.5, "ask": price + 0.5,
                                       "last": price, "ts": now_ms()}).encode()
                    await nc.publish(f"titan.data.market.ticker.v1.{symbol}", body)
                if n % 5 == 0:
                    signal_id = f"chaos-nats-{n}"
                    body, headers = signed_command(secret, subjects.CMD_PLACE, {
                        "signal_id": signal_id, "symbol": "BTCUSDT", "side": "buy", "quantity": 0.001,
                        "order_type": "market"})
                    try:
                        reply = await nc.request(subjects.CMD_PLACE, body, headers=headers, timeout=3)
                        placed.append((signal_id, json.loads(reply.data).get("type", "error")))
                    except Exception:
                        placed.append((signal_id, "no reply"))
                n += 1
                await asyncio.sleep(0.05)
            except Exception:
                nc = None
                await asyncio.sleep(0.2)
        if nc is not None:
            await nc.close()

    asyncio.run(run())


# --- the killer -----------------------------------------------------------------------------


def _incarnation(engine: Any, role: str) -> tuple[int, int]:
    """(pid, cell) of what now serves `role`: an actor killed in a shared
    worker comes back in the same pid with a new cell."""
    status = engine.status()
    if role == "nats-server":
        return status.get("nats_pid", 0), 0
    actor = next((a for a in status["actors"] if a["role"] == role), None)
    return (actor["pid"], actor["detail"].get("cell", 0)) if actor else (0, 0)


def _kill_loop(engine: Any, roles: list[str], rng: random.Random, every_s: float, stop: threading.Event,
               recoveries: dict[str, list[float]], kinds: dict[str, int]) -> None:
    """Every `every_s`, one role: SIGKILL of its worker or of nats-server, or a
    kill of the actor alone (`titan kill`), chosen at random."""
    while not stop.wait(every_s):
        role = rng.choice(roles)
        try:
            before = _incarnation(engine, role)
        except Exception:
            continue
        if not before[0]:
            continue
        whole = role == "nats-server" or rng.random() < 0.5
        killed_at = time.monotonic()
        try:
            if whole:
                os.kill(before[0], signal.SIGKILL)
            else:
                engine.control({"cmd": "kill", "role": role})
        except Exception:
            continue
        kinds["worker" if whole else "actor"] = kinds.get("worker" if whole else "actor", 0) + 1
        deadline = killed_at + 20
        while time.monotonic() < deadline and not stop.is_set():
            try:
                now = _incarnation(engine, role)
            except Exception:
                now = (0, 0)
            if now[0] and now != before:
                recoveries.setdefault(role, []).append(time.monotonic() - killed_at)
                break
            time.sleep(0.02)


# --- settling and checks -------------------------------------------------------------------


def _settled(engine: Any) -> bool:
    try:
        status = engine.status()
    except Exception:
        return False
    if status["missing"] or not status["actors"]:
        return False
    for actor in status["actors"]:
        detail = actor["detail"]
        if detail.get("outbox_depth", 0) or detail.get("deliveries_depth", 0) or detail.get("rebuilding"):
            return False
        if actor["role"].startswith("position:") and not all((detail.get("reconciled") or {}).values()):
            return False
    return True


def _check_all(result: ChaosResult, engine: Any, traffic: _Traffic, placed: list[tuple[str, str]],
               recoveries: dict[str, list[float]], halt: tuple[float, float, float, float] | None) -> None:
    from titan_actors.domain.ids import client_order_id

    result.add("every request answered", not traffic.unresolved,
               f"{traffic.replies} final replies, {len(traffic.attempts)} attempts, "
               f"{len(traffic.unresolved)} unresolved, NATS places {len(placed)} "
               f"({sum(1 for _s, t in placed if t == 'no reply')} without reply)")
    audit = engine.control({"cmd": "venue_orders"}, timeout=30, exact=True)
    venue, journal = audit["venue"], audit["journal"]
    sent = set(traffic.signals) | {s for s, _t in placed}
    by_coid = {client_order_id(s): s for s in sent}
    strangers = [c for c in venue if c not in by_coid]
    signals_at_venue = collections.Counter(by_coid[c] for c in venue if c in by_coid)
    doubles = [s for s, n in signals_at_venue.items() if n > 1]
    result.add("no signal made two orders", not doubles and not strangers,
               f"{len(venue)} venue orders for {len(signals_at_venue)} signals; {len(doubles)} doubles, "
               f"{len(strangers)} unknown client ids")
    reached = {c for c, o in journal.items() if o["order_id"]}
    result.add("venue and journal agree", set(venue) == reached,
               f"{len(venue)} at the venue, {len(reached)} journaled as sent; "
               f"only at venue {len(set(venue) - reached)}, only in journal {len(reached - set(venue))}")
    status = engine.status(exact=True)
    bad = []
    for symbol in ("BTCUSDT", "ETHUSDT"):  # exact: quantities are decimals end to end
        actor = next((a for a in status["actors"] if a["role"] == f"position:{symbol}"), None)
        shadow = (actor["detail"]["venues"].get("paper", {}).get("qty", 0)) if actor else None
        fills = sum((o["filled_qty"] if o["side"] == "buy" else -o["filled_qty"])
                    for o in venue.values() if o["symbol"] == symbol)
        at_venue = audit["positions"].get(symbol, 0)
        if shadow is None or shadow != at_venue or fills != at_venue:
            bad.append(f"{symbol}: shadow {shadow} venue {at_venue} fills {fills}")
    result.add("positions equal the venue and the fills", not bad, "; ".join(bad) or "BTCUSDT, ETHUSDT match")
    events = read_stream(nats_client_url(status["nats_url"], status["data_dir"]))
    trade_ids = [e["data"]["last_fill"]["trade_id"] for e in events
                 if e["subject"].startswith("titan.evt.execution.report.") and e["data"].get("last_fill")]
    venue_fills = sum(o["fills"] for o in venue.values())
    duplicates = len(trade_ids) - len(set(trade_ids))
    gaps = []
    seqs: dict[str, list[int]] = collections.defaultdict(list)
    for event in events:
        seqs[event["source"]].append(event["seq"])
    for source, values in seqs.items():
        if sorted(values) != list(range(1, len(values) + 1)) or len(values) != len(set(values)):
            gaps.append(source)
    result.add("every fill once in JetStream, seq without gaps",
               not duplicates and len(set(trade_ids)) == venue_fills and not gaps,
               f"{len(set(trade_ids))} fills in the stream, {venue_fills} at the venue, {duplicates} twice; "
               f"{len(events)} events from {len(seqs)} sources, gaps in {gaps or 'none'}")
    if halt is not None:
        start, end, wall_start, wall_end = halt
        prepared = [a for a in traffic.attempts if a[1] == "PREPARE" and a[2] == HALTED_SYMBOL
                    and start + 0.05 <= a[3] <= end and a[4] == "PREPARED"]
        placed_during = [c for c, o in venue.items() if o["symbol"] == HALTED_SYMBOL
                         and (wall_start + 0.05) * 1000 <= o["created_ts"] <= wall_end * 1000]
        result.add("the halt was never violated", not prepared and not placed_during,
                   f"{HALTED_SYMBOL} halted {end - start:.1f}s; {len(prepared)} PREPAREs sent during it "
                   f"were PREPARED, {len(placed_during)} orders reached the venue during it")
    recover = {role: (statistics.median(v), max(v), len(v)) for role, v in recoveries.items()}
    kills = sum(len(v) for v in recoveries.values())
    slow = {r: m for r, (_p, m, _n) in recover.items() if m > 10}
    result.add("every killed role recovered", not slow,
               f"{kills} kills; " + ", ".join(f"{r} x{n} p50 {p * 1000:.0f}ms max {m * 1000:.0f}ms"
                                             for r, (p, m, n) in sorted(recover.items())))
    result.stats["restarts"] = {a["role"]: a["restarts"] for a in status["actors"]}
    result.stats["recovery_ms"] = {r: {"p50": p * 1000, "max": m * 1000, "kills": n}
                                   for r, (p, m, n) in recover.items()}


def run_chaos(*, duration: float, rate: float, kill_every_ms: float, roles: list[str] | None = None,
              seed: int = 1, workdir: str | None = None, profile: str = "packed") -> ChaosResult:
    from titan_actors.tools.engine_process import EngineProcess, wait_for

    rng = random.Random(seed)
    work = Path(workdir or tempfile.mkdtemp(prefix="titan-chaos-"))
    secret = secrets.token_hex(32).encode()
    socket_path = str(work / "fastpath.sock")
    engine = EngineProcess(work, CONFIG, {"TITAN_IPC_SOCKET": socket_path, "TITAN_HTTP_LISTEN": "127.0.0.1:0",
                                          "TITAN_HMAC_SECRET": secret.decode(), "TITAN_PLACEMENT": profile})
    engine.env.pop("NATS_URL", None)
    result = ChaosResult()
    engine.start()
    try:
        traffic = _Traffic(socket_path, secret, random.Random(rng.random()), rate)
        stop, kill_stop = threading.Event(), threading.Event()
        placed: list[tuple[str, str]] = []
        recoveries: dict[str, list[float]] = {}
        kinds: dict[str, int] = {}
        threads = [
            threading.Thread(target=traffic.run, args=(stop,), name="chaos-traffic"),
            threading.Thread(target=_nats_side, args=(lambda: nats_client_url(engine.status()["nats_url"],
                                                                              engine.data_dir), secret,
                                                      random.Random(rng.random()), stop, placed),
                             name="chaos-nats"),
            threading.Thread(target=_kill_loop, args=(engine, list(roles or DEFAULT_ROLES),
                                                      random.Random(rng.random()), kill_every_ms / 1000,
                                                      kill_stop, recoveries, kinds), name="chaos-killer"),
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        time.sleep(duration * 0.4)
        halt = None
        scope = f"symbol:{HALTED_SYMBOL}"
        reply = _operator(engine, {"cmd": "trading_state", "mode": "HALTED", "scope": scope,
                                   "reason": "chaos drill", "operator": "chaos"})
        if reply is not None:
            halt_start, wall_start = time.monotonic(), time.time()
            time.sleep(duration * 0.2)
            halt_end, wall_end = time.monotonic(), time.time()
            if _operator(engine, {"cmd": "trading_state", "mode": "ACTIVE", "scope": scope,
                                  "reason": "chaos drill over", "operator": "chaos"}) is not None:
                halt = (halt_start, halt_end, wall_start, wall_end)
        time.sleep(max(0.0, started + duration - time.monotonic()))
        kill_stop.set()
        stop.set()
        for thread in threads:
            thread.join(RESOLVE_S + 30)
        settled = True
        try:
            wait_for(lambda: _settled(engine), 90, 0.2, "the engine to settle")
        except TimeoutError:
            settled = False
        result.add("the engine settled", settled, "every outbox empty, every role up, positions reconciled"
                   if settled else "still unsettled after 90 s")
        _check_all(result, engine, traffic, placed, recoveries, halt)
        result.stats["seed"] = seed
        result.stats["profile"] = profile
        result.stats["kills_by_kind"] = kinds
    finally:
        engine.stop()
        result.stats["leftover_processes"] = len(engine.leftovers())
    return result


def _operator(engine: Any, request: dict[str, Any]) -> dict[str, Any] | None:
    """An operator command, retried while its actor restarts (chaos is killing it)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            return engine.control(request, timeout=10)
        except Exception:
            time.sleep(0.2)
    return None
