"""OTP supervision semantics, on real workers in a private system.

Actors are killed one at a time through the runtime (`KillRole`, what
`titan kill ROLE` sends), which ends one actor whichever worker hosts it, and
incarnations are told apart by their `cell`: these tests hold under both
placement profiles. Whole workers are SIGKILLed where that is the point."""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

from supervisors.tree import SUPERVISOR
from tests.support.engine import wait_for
from tests.support.system import ActorSystemHarness
from titan_actors.messages import (
    ChildSpec,
    Directory,
    GetDirectory,
    StartChild,
    StartChildResult,
    StopTree,
    TreeStopped,
)
from titan_actors.runtime.placement import Placement
from titan_actors.runtime.protocol import KillRole, Routed

WORKER = "tests.support.actors.Steady"
CRASHER = "tests.support.actors.CrashAtStart"


def _worker(tmp: Path, cid: str, restart: str = "permanent") -> ChildSpec:
    return ChildSpec(id=cid, actor=WORKER, restart=restart,
                     config={"starts_file": str(tmp / f"{cid}.starts"), "stops_file": str(tmp / "stops")})


def _start_lines(tmp: Path, cid: str) -> list[list[str]]:
    path = tmp / f"{cid}.starts"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _starts(tmp: Path, cid: str) -> list[float]:
    return [float(t) for t, _pid in _start_lines(tmp, cid)]


def _pids(system: ActorSystemHarness) -> dict[str, int]:
    return {a.role: a.pid for a in system.tree().actors}


def _cells(system: ActorSystemHarness) -> dict[str, int]:
    """Role → incarnation: a restart in the same worker gets a new cell."""
    return {a.role: a.detail["cell"] for a in system.tree().actors}


def _kill(system: ActorSystemHarness, role: str) -> None:
    system.asys.tell(system.root, KillRole(role))


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_failing_at_start_is_retried_with_backoff_then_its_supervisor_gives_up_and_the_parent_decides(
    actor_system: ActorSystemHarness, tmp_path: Path
) -> None:
    marker = tmp_path / "root-gave-up"
    sub = ChildSpec(id="sub", actor=SUPERVISOR, kind="supervisor", config={
        "intensity": 3, "period_s": 30, "backoff_initial_s": 0.05, "backoff_max_s": 1.0,
        "children": [ChildSpec(id="bad", actor=CRASHER,
                               config={"starts_file": str(tmp_path / "bad.starts")})],
    })
    root = actor_system.start_root(
        [_worker(tmp_path, "w1"), sub],
        strategy="one_for_all", intensity=1, period_s=30, gave_up_marker=str(marker),
        backoff_initial_s=0.01,
    )
    # sub gives up twice (the root restarts it once, one_for_all), then the
    # root is past its own intensity and gives up: the whole tree ends.
    wait_for(lambda: not _alive(root.pid), 20.0, 0.05, "the root to give up and exit")
    attempts = _starts(tmp_path, "bad")
    assert len(attempts) == 8, attempts  # 2 generations x (1 start + 3 restarts)
    for generation in (attempts[:4], attempts[4:]):
        gaps = [b - a for a, b in itertools.pairwise(generation)]
        for gap, backoff in zip(gaps, (0.05, 0.1, 0.2), strict=True):
            assert gap >= backoff * 0.95, (gaps, "backoff not applied")
        assert gaps[2] > gaps[0], "backoff must grow"
    # one_for_all: the healthy sibling was restarted with sub.
    assert len(_starts(tmp_path, "w1")) == 2
    assert "restarts" in marker.read_text()
    for _t, pid in _start_lines(tmp_path, "w1") + _start_lines(tmp_path, "bad"):
        wait_for(lambda pid=pid: not _alive(int(pid)), 5.0, 0.05, f"actor {pid} gone with the tree")


def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it_in_order(
    actor_system: ActorSystemHarness, tmp_path: Path
) -> None:
    actor_system.start_root([_worker(tmp_path, c) for c in ("a", "b", "c")], strategy="rest_for_one")
    before = wait_for(lambda: len(p := _cells(actor_system)) == 4 and p, 10.0, 0.05, "tree up")
    _kill(actor_system, "b")
    after = wait_for(
        lambda: (p := _cells(actor_system)).get("c") not in (None, before["c"]) and len(p) == 4 and p,
        10.0, 0.02, "b and c restarted",
    )
    assert after["a"] == before["a"]
    assert after["b"] != before["b"]
    stops = (tmp_path / "stops").read_text().split("\n")
    assert stops[0].startswith("c "), "c must be stopped (it was started after b)"
    assert _starts(tmp_path, "b")[-1] < _starts(tmp_path, "c")[-1], "b restarts before c"


def test_one_for_all_restarts_every_child_when_one_fails(
    actor_system: ActorSystemHarness, tmp_path: Path
) -> None:
    actor_system.start_root([_worker(tmp_path, c) for c in ("a", "b", "c")], strategy="one_for_all")
    before = wait_for(lambda: len(p := _cells(actor_system)) == 4 and p, 10.0, 0.05, "tree up")
    _kill(actor_system, "c")
    after = wait_for(
        lambda: len(p := _cells(actor_system)) == 4 and all(p[c] != before[c] for c in "abc") and p,
        10.0, 0.02, "all restarted",
    )
    assert after["root"] == before["root"]
    stops = [line.split()[0] for line in (tmp_path / "stops").read_text().split("\n") if line]
    assert stops == ["b", "a"], "the others stop in reverse start order"


def test_restart_types_permanent_transient_and_temporary_are_honoured(
    actor_system: ActorSystemHarness, tmp_path: Path
) -> None:
    actor_system.start_root([
        _worker(tmp_path, "perm", "permanent"),
        _worker(tmp_path, "trans", "transient"),
        _worker(tmp_path, "trans2", "transient"),
        _worker(tmp_path, "temp", "temporary"),
    ])
    before = wait_for(lambda: len(p := _cells(actor_system)) == 5 and p, 10.0, 0.05, "tree up")
    directory = actor_system.asys.ask(actor_system.root, GetDirectory(), 5)
    assert isinstance(directory, Directory)
    for role in ("perm", "trans", "temp"):
        _kill(actor_system, role)
    actor_system.asys.tell(directory.get("trans2").address, Routed("trans2", None, "exit-normally"))
    after = wait_for(
        lambda: (p := _cells(actor_system)).keys() == {"root", "perm", "trans"}
        and p["perm"] != before["perm"] and p["trans"] != before["trans"] and p,
        10.0, 0.02, "permanent and crashed transient restarted; temporary and normal transient not",
    )
    assert "temp" not in after and "trans2" not in after
    def children() -> dict:
        return {c["id"]: c for c in actor_system.root_status().detail["children"]}

    wait_for(lambda: "temp" not in children(), 5.0, 0.05, "the temporary child forgotten")
    assert children()["trans2"]["state"] == "stopped"


def test_start_child_adds_a_child_once_and_stop_tree_stops_in_reverse_order(
    actor_system: ActorSystemHarness, tmp_path: Path
) -> None:
    actor_system.start_root([_worker(tmp_path, "a"), _worker(tmp_path, "b")])
    wait_for(lambda: len(_pids(actor_system)) == 3, 10.0, 0.05, "tree up")
    first = actor_system.asys.ask(actor_system.root, StartChild(_worker(tmp_path, "c")), 5)
    again = actor_system.asys.ask(actor_system.root, StartChild(_worker(tmp_path, "c")), 5)
    assert first == StartChildResult("c", True)
    assert again == StartChildResult("c", True, already=True)
    wait_for(lambda: "c" in _pids(actor_system), 10.0, 0.05, "c up")
    assert len(_starts(tmp_path, "c")) == 1
    stopped = actor_system.asys.ask(actor_system.root, StopTree(), 20)
    assert isinstance(stopped, TreeStopped)
    assert set(stopped.stopped) == {"a", "b", "c"}
    order = [line.split()[0] for line in (tmp_path / "stops").read_text().split("\n") if line]
    assert order == ["c", "b", "a"]


def test_children_killed_at_the_same_instant_are_all_restarted_even_when_thespian_reports_only_some(
    actor_system: ActorSystemHarness, tmp_path: Path
) -> None:
    # Regression: thespian delivered ChildActorExited for 2 of 3 children
    # SIGKILLed together; the third stayed "running" in its supervisor forever.
    # One worker per actor, so that five processes die at once.
    names = [f"w{i}" for i in range(5)]
    actor_system.start_root([_worker(tmp_path, n) for n in names], placement=Placement(profile="isolated"))
    before = wait_for(lambda: len(p := _pids(actor_system)) == 6 and p, 10.0, 0.05, "tree up")
    for name in names:
        os.kill(before[name], signal.SIGKILL)
    after = wait_for(
        lambda: len(p := _pids(actor_system)) == 6 and all(p[n] != before[n] for n in names) and p,
        10.0, 0.02, "all five restarted",
    )
    assert all(len(_starts(tmp_path, n)) == 2 for n in names), "each restarted exactly once"
    assert after["root"] == before["root"]


def test_an_actor_that_raises_is_restarted_in_its_worker_and_its_neighbours_go_on(
    actor_system: ActorSystemHarness, tmp_path: Path
) -> None:
    actor_system.start_root([_worker(tmp_path, c) for c in ("a", "b", "c")],
                            placement=Placement(profile="packed"))
    before = wait_for(lambda: len(p := _cells(actor_system)) == 4 and p, 10.0, 0.05, "tree up")
    pids = _pids(actor_system)
    assert pids["a"] == pids["b"] == pids["c"] != pids["root"], "packed: one worker hosts a, b and c"
    directory = actor_system.asys.ask(actor_system.root, GetDirectory(), 5)
    actor_system.asys.tell(directory.get("b").address, Routed("b", None, "raise"))
    after = wait_for(lambda: (p := _cells(actor_system)).get("b") not in (None, before["b"]) and p,
                     10.0, 0.02, "b restarted")
    assert after["a"] == before["a"] and after["c"] == before["c"], "a and c were not touched"
    assert _pids(actor_system)["b"] == pids["b"], "restarted in the same worker"
    assert len(_starts(tmp_path, "a")) == 1 and len(_starts(tmp_path, "b")) == 2
    crash = (tmp_path / "data" / "logs" / "crash.log").read_text()
    assert "role=b message=raise worker=core" in crash and "told to raise" in crash


def test_a_sigkilled_worker_is_the_crash_of_every_actor_in_it_and_all_of_them_recover(
    actor_system: ActorSystemHarness, tmp_path: Path
) -> None:
    actor_system.start_root([_worker(tmp_path, c) for c in ("a", "b", "c")],
                            placement=Placement(profile="packed"))
    before = wait_for(lambda: len(p := _pids(actor_system)) == 4 and p, 10.0, 0.05, "tree up")
    os.kill(before["b"], signal.SIGKILL)
    after = wait_for(lambda: len(p := _pids(actor_system)) == 4
                     and all(p[c] != before[c] for c in "abc") and p, 10.0, 0.02, "the worker restarted")
    assert after["a"] == after["b"] == after["c"], "they share the new worker again"
    assert after["root"] == before["root"]
    assert all(len(_starts(tmp_path, c)) == 2 for c in "abc")
