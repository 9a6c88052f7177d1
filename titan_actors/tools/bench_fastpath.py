"""`titan bench fastpath`: signal latency and throughput through the engine.

K connections send PREPARE then CONFIRM for each signal, at a target rate of
signals per second (or as fast as they can, `max`), for a duration. Latency
is measured per phase (PREPARE→PREPARED, CONFIRM→ACCEPTED) at the client.

The floor is measured in the same run: a bare Python echo over a Unix socket
that does what the gateway must do per frame at the least (frame, HMAC check,
JSON decode, JSON encode, HMAC sign) and nothing else. Each engine figure is
also printed as a multiple of the floor's.

Memory: the summed RSS and PSS (RSS double-counts pages that forked actors
share) of every process of the engine — titan run, the thespian Admin and
logger, every actor, nats-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import secrets
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from titan_actors.client import AsyncFastPathClient
from titan_actors.runtime.clock import now_ms
from titan_actors.runtime.procs import cpu_ticks
from titan_actors.tools.bench_lanes import percentile
from titan_actors.wire.fastpath import FrameReader, decode_payload, encode_message, mac_ok

__all__ = ["format_fastpath", "run_fastpath_bench"]

PERCENTILES = (50, 90, 99, 99.9)


# --- the floor: a bare echo -----------------------------------------------------------


def _echo_server(path: str, secret: bytes, ready: Any) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    ready.set()
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    readers: dict[socket.socket, FrameReader] = {}
    answer = {"PREPARE": "PREPARED", "CONFIRM": "ACCEPTED"}
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is server:
                conn, _ = server.accept()
                readers[conn] = FrameReader()
                sel.register(conn, selectors.EVENT_READ)
                continue
            data = sock.recv(65536)
            if not data:
                sel.unregister(sock)
                readers.pop(sock).feed(b"")
                sock.close()
                continue
            reader = readers[sock]
            reader.feed(data)
            out = bytearray()
            for frame in reader.frames():
                if not mac_ok(secret, frame):
                    continue
                req = decode_payload(frame.payload)
                reply = {"type": answer.get(req.get("type"), "PONG"), "signal_id": req.get("signal_id"),
                         "req_id": req.get("req_id"), "ts": now_ms()}
                out += encode_message(secret, reply)
            sock.sendall(out)


class _Floor:
    def __init__(self, workdir: Path, secret: bytes) -> None:
        self.path = str(workdir / "echo.sock")
        ctx = multiprocessing.get_context("fork")
        ready = ctx.Event()
        self.proc = ctx.Process(target=_echo_server, args=(self.path, secret, ready), daemon=True)
        self.proc.start()
        ready.wait(10)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(5)


# --- the driver -------------------------------------------------------------------------


async def _drive(path: str, secret: bytes, *, rate: float | None, duration: float, connections: int,
                 prefix: str) -> dict[str, Any]:
    prepare_ms: list[float] = []
    confirm_ms: list[float] = []
    errors: dict[str, int] = {}
    counter = itertools.count()
    clients = [await AsyncFastPathClient(path, secret, timeout=10).connect() for _ in range(connections)]
    start = time.perf_counter()
    end = start + duration

    def error(reply: dict[str, Any]) -> None:
        key = reply.get("code") or reply.get("type", "?")
        errors[key] = errors.get(key, 0) + 1

    async def worker(client: AsyncFastPathClient) -> None:
        while True:
            i = next(counter)
            due = start + i / rate if rate else time.perf_counter()
            if due >= end:
                return
            if due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            signal_id = f"{prefix}-{i}"
            t0 = time.perf_counter()
            prepared = await client.request({"type": "PREPARE", "signal_id": signal_id, "symbol": "BTCUSDT",
                                             "side": "buy" if i % 2 else "sell", "quantity": 0.001,
                                             "order_type": "market"})
            t1 = time.perf_counter()
            if prepared["type"] != "PREPARED":
                error(prepared)
                continue
            accepted = await client.request({"type": "CONFIRM", "signal_id": signal_id})
            t2 = time.perf_counter()
            if accepted["type"] != "ACCEPTED":
                error(accepted)
                continue
            prepare_ms.append((t1 - t0) * 1000)
            confirm_ms.append((t2 - t1) * 1000)

    async def drain(client: AsyncFastPathClient) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await client._executions.get()

    drains = [asyncio.create_task(drain(c)) for c in clients]
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed = time.perf_counter() - start
    for task in drains:
        task.cancel()
    for client in clients:
        await client.close()
    return {"signals": len(confirm_ms), "seconds": elapsed, "signals_per_s": len(confirm_ms) / elapsed,
            "errors": errors, "prepare_ms": _summary(prepare_ms), "confirm_ms": _summary(confirm_ms)}


def _summary(values: list[float]) -> dict[str, float]:
    out = {f"p{p:g}": percentile(values, p) for p in PERCENTILES}
    out["max"] = max(values) if values else float("nan")
    return out


# --- memory ---------------------------------------------------------------------------


def _memory_kb(pids: list[int]) -> dict[str, int]:
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return {"processes": len(pids), "rss_kb": rss, "pss_kb": pss}


# --- CPU -------------------------------------------------------------------------------


def _cpu_ticks(pids: list[int]) -> dict[int, tuple[str, int]]:
    """pid → (process name, user + system clock ticks so far)."""
    out = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            out[pid] = cpu_ticks(pid)
    return out


def _cpu_per_signal(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]],
                    driver_s: float, signals: int) -> dict[str, float]:
    """µs of CPU per signal by process name (actors as `t:<role>`), plus the
    load generator; a process that restarted meanwhile counts from zero."""
    hz = os.sysconf("SC_CLK_TCK")
    per: dict[str, float] = {}
    for pid, (name, ticks) in after.items():
        spent = ticks - before.get(pid, (name, 0))[1]
        per[name] = per.get(name, 0.0) + spent / hz
    per["load generator"] = driver_s
    n = max(signals, 1)
    return {name: seconds * 1e6 / n for name, seconds in sorted(per.items(), key=lambda kv: -kv[1])}


# --- the command ------------------------------------------------------------------------


def run_fastpath_bench(*, rate: float | None, duration: float, connections: int,
                       socket_path: str | None = None, secret: bytes | None = None,
                       data_dir: str | None = None, profile: str = "packed",
                       fsync: bool = True) -> dict[str, Any]:
    """Start an engine in a temp dir with placement `profile` (unless
    `socket_path` targets a running one), measure the floor and the engine,
    and return the figures."""
    from titan_actors.tools.engine_process import EngineProcess

    workdir = Path(tempfile.mkdtemp(prefix="titan-bench-"))
    engine = None
    try:
        if socket_path is None:
            secret = secrets.token_hex(32).encode()
            socket_path = str(workdir / "fastpath.sock")
            config = f"[engine]\nlog_level = 'WARNING'\nfsync = {str(fsync).lower()}\n"
            engine = EngineProcess(workdir, config,
                                   {"TITAN_IPC_SOCKET": socket_path, "TITAN_HMAC_SECRET": secret.decode(),
                                    "TITAN_PLACEMENT": profile, "TITAN_HTTP_LISTEN": "127.0.0.1:0"})
            engine.env.pop("NATS_URL", None)
            engine.start()
        assert secret is not None
        floor = _Floor(workdir, secret)
        try:
            floor_figures = asyncio.run(_drive(floor.path, secret, rate=rate, duration=min(duration, 5.0),
                                               connections=connections, prefix="floor"))
        finally:
            floor.stop()
        run = f"b{os.getpid()}x{int(time.time())}"
        # Warm-up: imports, stores, lanes.
        asyncio.run(_drive(socket_path, secret, rate=rate, duration=min(1.0, duration),
                           connections=connections, prefix=f"{run}w"))
        pids = engine.processes() if engine is not None else _running_engine_pids(data_dir)
        ticks, driver0 = _cpu_ticks(pids), time.process_time()
        figures = asyncio.run(_drive(socket_path, secret, rate=rate, duration=duration,
                                     connections=connections, prefix=run))
        if pids:
            figures["cpu_us_per_signal"] = _cpu_per_signal(ticks, _cpu_ticks(pids),
                                                           time.process_time() - driver0, figures["signals"])
            figures["memory"] = _memory_kb(pids)
        return {"rate": rate or "max", "duration_s": duration, "connections": connections, "fsync": fsync,
                "engine": figures, "floor": floor_figures}
    finally:
        if engine is not None:
            engine.stop()


def _running_engine_pids(data_dir: str | None) -> list[int]:
    from supervisors.bootstrap import read_engine_file
    from titan_actors.runtime.procs import pgid_members

    if not data_dir:
        return []
    info = read_engine_file(Path(data_dir)) or {}
    pids = pgid_members(info.get("actors_pgid", 0)) if info.get("actors_pgid") else []
    return pids + [p for p in (info.get("pid", 0), info.get("nats_pid", 0)) if p]


def format_fastpath(result: dict[str, Any]) -> str:
    engine, floor = result["engine"], result["floor"]
    lines = [
        f"rate {result['rate']} signals/s, {result['duration_s']} s, {result['connections']} connections, "
        f"fsync {'on' if result.get('fsync', True) else 'off'}",
        f"achieved {engine['signals_per_s']:.0f} signals/s ({engine['signals']} signals); "
        f"errors {engine['errors'] or 'none'}",
        f"{'latency ms':<22}" + "".join(f"{k:>9}" for k in ("p50", "p90", "p99", "p99.9", "max")),
    ]
    for label, key in (("PREPARE->PREPARED", "prepare_ms"), ("CONFIRM->ACCEPTED", "confirm_ms")):
        lines.append(f"{label:<22}" + "".join(f"{engine[key][k]:>9.3f}"
                                              for k in ("p50", "p90", "p99", "p99.9", "max")))
        lines.append(f"{'  floor (echo)':<22}" + "".join(f"{floor[key][k]:>9.3f}"
                                                       for k in ("p50", "p90", "p99", "p99.9", "max")))
        lines.append(f"{'  x floor':<22}" + "".join(
            f"{engine[key][k] / floor[key][k]:>9.1f}" if floor[key][k] else f"{'-':>9}"
            for k in ("p50", "p90", "p99", "p99.9", "max")))
    if "cpu_us_per_signal" in engine:
        cpu = engine["cpu_us_per_signal"]
        lines.append(f"CPU per signal: {sum(cpu.values()):.0f} µs: "
                     + ", ".join(f"{name} {us:.0f}" for name, us in cpu.items() if us >= 1))
    if "memory" in engine:
        mem = engine["memory"]
        lines.append(f"engine memory: {mem['processes']} processes, RSS {mem['rss_kb'] / 1024:.0f} MiB, "
                     f"PSS {mem['pss_kb'] / 1024:.0f} MiB")
    return "\n".join(lines)
