"""The engine's tree, run for real by `titan run`: start, kill, restart, reach."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.engine import PROFILE, RunningEngine, wait_for

ROLES = {
    "root", "nats", "risk", "algos", "venues", "venue:paper", "positions",
    "position:BTCUSDT", "position:ETHUSDT", "http", "ledger", "gateway",
}
SUPERVISORS = {"root", "algos", "venues", "positions"}
# Every role but the root supervisor: the root worker's restart is the watchdog's (tested below).
KILLABLE = sorted(ROLES - {"root"})


def expected_worker(role: str) -> str:
    """Where placement puts `role` under the profile of this test run."""
    if role in SUPERVISORS:
        return "root"
    if PROFILE == "isolated":
        return role
    return "nats" if role in ("nats", "http", "ledger") else "core"


def _kill_and_wait_new(engine: RunningEngine, role: str, *,
                       worker: bool) -> tuple[tuple[int, int], dict, float]:
    """Kill `role` (the actor alone, or its worker); returns what served it
    before, its new actor status, and the seconds from the kill until the new
    incarnation had finished its start (its own `started_at`)."""
    old = engine.cells()[role]
    killed_at = time.time()
    if worker:
        os.kill(old[0], signal.SIGKILL)
    else:
        engine.kill(role)

    def new_actor() -> dict | None:
        actor = next((a for a in engine.status()["actors"] if a["role"] == role), None)
        return actor if actor and (actor["pid"], actor["detail"]["cell"]) != old else None

    actor = wait_for(new_actor, 5.0, 0.01, f"{role} back as a new incarnation")
    return old, actor, actor["started_at"] - killed_at


def test_the_tree_starts_and_every_role_answers_status_from_the_worker_placement_gives_it(
    engine: RunningEngine,
) -> None:
    status = engine.status()
    pids = {a["role"]: a["pid"] for a in status["actors"]}
    assert set(pids) == ROLES
    assert status["missing"] == []
    workers = {a["role"]: a["worker"] for a in status["actors"]}
    assert workers == {role: expected_worker(role) for role in ROLES}, workers
    by_worker: dict[str, set[int]] = {}
    for role, pid in pids.items():
        by_worker.setdefault(workers[role], set()).add(pid)
    assert all(len(p) == 1 for p in by_worker.values()), "one process per worker"
    assert len({next(iter(p)) for p in by_worker.values()}) == len(by_worker), "a process per worker"
    assert os.getpid() not in pids.values()
    for actor in status["actors"]:
        assert actor["state"] == "running", actor
        assert actor["restarts"] == 0
        assert Path(f"/proc/{actor['pid']}").exists()
    # The bridge really reached the nats-server titan run started.
    nats = next(a for a in status["actors"] if a["role"] == "nats")
    assert nats["detail"]["connected"] is True
    # Every actor learned the peers it needs from the directory.
    gateway = next(a for a in status["actors"] if a["role"] == "gateway")
    assert set(gateway["detail"]["peers"]) == {"risk", "venue:paper", "positions", "nats"}


@pytest.mark.parametrize("worker", [False, True], ids=["actor", "worker"])
@pytest.mark.parametrize("role", sorted(ROLES - SUPERVISORS))
def test_a_killed_role_is_back_within_a_second_and_reachable_over_lane_and_thespian(
    engine: RunningEngine, role: str, worker: bool
) -> None:
    old, new, seconds = _kill_and_wait_new(engine, role, worker=worker)
    assert seconds < 1.0, f"{role} took {seconds:.3f}s to come back"
    if worker:
        assert _gone(old[0]) and new["pid"] != old[0]
    else:
        assert new["pid"] == old[0], "an actor killed alone comes back in its worker"
    engine.wait_whole(ROLES)
    sender = "gateway" if role != "gateway" else "risk"
    shared = expected_worker(sender) == expected_worker(role)
    for via in ("lane", "thespian"):
        # The sender had the old address; the directory push must have told it.
        reply = wait_for(
            lambda via=via: _reached(engine, sender, role, via), 3.0, 0.05, f"{sender}->{role} {via}"
        )
        assert reply["pid"] == new["pid"]
        # In one worker a message is handed over in memory, whatever was asked.
        assert reply["arrived_by"] == ("memory" if shared else via), reply
        # And the restarted actor reaches its peers too.
        back = engine.control({"cmd": "relay", "from": role, "target": sender, "via": via})
        assert back["reached"] is True
    assert engine.actor(role)["restarts"] == 1


@pytest.mark.parametrize("role", ["risk", "venue:paper", "position:BTCUSDT", "gateway"])
def test_an_actor_killed_alone_does_not_touch_its_neighbours(engine: RunningEngine, role: str) -> None:
    before = engine.cells()
    engine.kill(role)
    after = wait_for(lambda: (c := engine.cells()).get(role) not in (None, before[role]) and c, 5.0, 0.01,
                     f"{role} restarted")
    assert {r: c for r, c in after.items() if r != role} == {r: c for r, c in before.items() if r != role}


def _reached(engine: RunningEngine, sender: str, target: str, via: str) -> dict | None:
    reply = engine.control({"cmd": "relay", "from": sender, "target": target, "via": via})
    return reply if reply["reached"] else None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_an_exception_in_a_handler_crashes_the_actor_which_is_restarted_and_the_crash_is_logged(
    engine: RunningEngine,
) -> None:
    old = engine.cells()["risk"]
    engine.control({"cmd": "fault", "role": "risk", "reason": "test-fault"})
    new = wait_for(lambda: (p := engine.cells().get("risk")) != old and p, 5.0, 0.02, "risk restarted")
    assert new[1] != old[1]
    crash = (engine.data_dir / "logs" / "crash.log").read_text()
    assert f"pid={old[0]} role=risk message=InjectFault worker={expected_worker('risk')}" in crash
    assert "Traceback" in crash and "test-fault" in crash
    risk = engine.actor("risk")
    assert risk["restarts"] == 1
    # Its store survived the crash: the restarted actor counted a second boot.
    assert risk["detail"]["boots"] == 2


def test_a_killed_supervisor_takes_its_children_with_it_and_its_subtree_comes_back(
    engine: RunningEngine,
) -> None:
    before = engine.cells()
    engine.kill("positions")

    def whole_again() -> dict | None:
        cells = engine.cells()
        changed = all(cells.get(r, before[r]) != before[r] for r in ("positions", "position:BTCUSDT",
                                                                      "position:ETHUSDT"))
        return cells if changed and set(cells) >= ROLES else None

    after = wait_for(whole_again, 10.0, 0.02, "the positions subtree restarted")
    for role in ("gateway", "risk", "nats", "venues", "venue:paper"):
        assert after[role] == before[role], f"{role} should not have been touched (one_for_one)"
    reply = wait_for(lambda: _reached(engine, "gateway", "position:BTCUSDT", "lane"), 3.0, 0.05, "relay")
    assert reply["pid"] == after["position:BTCUSDT"][0]


def test_a_killed_root_takes_its_whole_tree_down_and_the_watchdog_starts_it_again(
    engine: RunningEngine,
) -> None:
    before = engine.pids()
    os.kill(before["root"], signal.SIGKILL)
    for role, pid in before.items():
        wait_for(lambda pid=pid: _gone(pid), 3.0, 0.01, f"{role} (pid {pid}) gone with the root worker")
    after = engine.wait_whole(ROLES, timeout=15)
    assert not set(after.values()) & set(before.values())
    assert engine.status()["root_restarts"] == 1
    reply = wait_for(lambda: _reached(engine, "gateway", "risk", "lane"), 3.0, 0.05, "relay")
    assert reply["pid"] == after["risk"]


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or _zombie(pid)


def test_a_killed_nats_server_is_restarted_and_the_bridge_reconnects(engine: RunningEngine) -> None:
    status = engine.status()
    old = status["nats_pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: engine.status()["nats_pid"] != old, 5.0, 0.05, "a new nats-server")
    bridge = wait_for(
        lambda: (a := engine.actor("nats"))["detail"]["connected"] and a["detail"]["connects"] >= 2 and a,
        10.0, 0.1, "the bridge reconnected",
    )
    assert bridge["pid"] == status["actors"][1]["pid"] or bridge["restarts"] == 0
    assert engine.status()["nats_restarts"] == 1
