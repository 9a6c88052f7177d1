"""`titan bench lanes`: in memory, FastLane and thespian between real actors.

Two workers are started in a private thespian system on a free port, one
actor (the plain `TitanActor`) in each, and a third actor beside the first
in its worker. The first floods a peer with small messages over one
transport (the last one is answered, so the time covers delivery of all)
and then measures sequential round trips: to its neighbour in the same
worker (handed over in memory), and to the other worker over a FastLane and
over thespian. The three are printed side by side.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import tempfile
import time
from typing import Any

from titan_actors.messages import (
    ChildStarted,
    Directory,
    EngineInfo,
    Init,
    LaneFlood,
    LaneFloodDone,
)
from titan_actors.runtime.placement import Placement
from titan_actors.runtime.procs import hostname
from titan_actors.runtime.protocol import Routed, StartCell, WorkerInit

__all__ = ["bench_lanes", "format_lanes", "percentile"]

_ACTOR = "titan_actors.runtime.actor.TitanActor"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def bench_lanes(*, lane_count: int, thespian_count: int, rtt: int) -> dict[str, Any]:
    """Run the benchmark; returns figures per transport."""
    from supervisors.embedded_nats import free_port
    from titan_actors.runtime.actorsystem import open_actor_system

    data_dir = tempfile.mkdtemp(prefix="titan-bench-")
    asys = open_actor_system(admin_port=free_port(),
                             log_defs={"version": 1, "root": {"level": "WARNING"}})
    pgid = 0
    try:
        from titan_actors.runtime.worker import WORKER_CLASS

        engine = EngineInfo(engine_id=os.urandom(6).hex(), data_dir=data_dir, host=hostname())
        peers = []
        for cell, (worker, role) in enumerate((("a", "bench:a"), ("b", "bench:b"), ("a", "bench:m")), 1):
            start = StartCell(_ACTOR, Init(role=role, engine=engine, config={}), supervisor="", cell=cell)
            if worker == "a" and peers:
                # Beside bench:a, in its worker, which tells its parent (us) it started.
                answered = asys.ask(peers[0].address, start, 10)
                started = answered.msg if isinstance(answered, Routed) else answered
            else:
                started = asys.ask(asys.createActor(WORKER_CLASS), WorkerInit(
                    name=worker, engine=engine, placement=Placement(), parent_pid=0, first=start), 10)
            if not isinstance(started, ChildStarted):
                raise RuntimeError(f"bench actor {role} did not start: {started!r}")
            peers.append(started.peer)
        pgid = peers[0].pgid
        directory = Directory(1, tuple(peers))
        for peer in peers[:2]:
            asys.tell(peer.address, directory)
        results = {}
        for via, target, count in (("memory", "bench:m", lane_count), ("lane", "bench:b", lane_count),
                                   ("thespian", "bench:b", thespian_count)):
            flood = LaneFlood(target, "lane" if via == "memory" else via, count, rtt)
            done = asys.ask(peers[0].address, Routed("bench:a", None, flood), 300)
            if not isinstance(done, LaneFloodDone):
                raise RuntimeError(f"the {via} run did not finish: {done!r}")
            results[via] = {
                "messages": done.count,
                "msgs_per_s": done.count / done.seconds,
                "rtt_p50_us": percentile(list(done.rtt_us), 50),
                "rtt_p99_us": percentile(list(done.rtt_us), 99),
                "rtt_mean_us": statistics.fmean(done.rtt_us) if done.rtt_us else float("nan"),
                "round_trips": len(done.rtt_us),
            }
        return results
    finally:
        asys.shutdown()
        if pgid and pgid != os.getpgid(0):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.05)


def format_lanes(results: dict[str, Any]) -> str:
    lines = [f"{'transport':<10} {'messages':>9} {'msgs/s':>10} {'rtt p50 us':>11} {'rtt p99 us':>11}"]
    for via, r in results.items():
        lines.append(f"{via:<10} {r['messages']:>9} {r['msgs_per_s']:>10.0f} "
                     f"{r['rtt_p50_us']:>11.0f} {r['rtt_p99_us']:>11.0f}")
    return "\n".join(lines)
