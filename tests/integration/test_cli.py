"""`titan run`, `titan status`, `titan stop` and `titan bench lanes` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.engine import FAST_SUPERVISION, PROFILE, RunningEngine, titan_cmd, wait_for
from titan_actors.runtime.procs import pgid_members, pid_alive

ROLES = {"root", "nats", "risk", "algos", "venues", "venue:paper", "positions", "position:BTCUSDT",
         "position:ETHUSDT", "http", "ledger", "gateway"}


def _titan(engine: RunningEngine, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(titan_cmd(*args, "--config", str(engine.config)), env=engine.env,
                          capture_output=True, text=True, timeout=timeout)


def test_titan_run_prints_where_things_are_and_titan_status_shows_the_tree(engine: RunningEngine) -> None:
    out = engine.output()
    assert engine.socket in out and str(engine.data_dir) in out and "nats://127.0.0.1:" in out
    text = _titan(engine, "status")
    assert text.returncode == 0, text.stderr
    for role in ROLES:
        assert f"\n{role} " in text.stdout
    as_json = _titan(engine, "status", "--json")
    status = json.loads(as_json.stdout)
    assert {a["role"] for a in status["actors"]} == ROLES
    assert all(a["state"] == "running" for a in status["actors"])


def test_sigterm_stops_the_tree_in_reverse_order_and_leaves_no_process(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path).start()
    try:
        with engine.client() as client:  # work in flight at the stop: batches to finish, acks to send
            for i in range(5):
                client.prepare(f"stop-{i}", "BTCUSDT", "buy", 0.001)
                assert client.confirm(f"stop-{i}")["type"] == "ACCEPTED"
        pids = engine.pids()
        nats_pid = engine.status()["nats_pid"]
        engine.proc.send_signal(signal.SIGTERM)
        assert engine.proc.wait(30) == 0
        for pid in [*pids.values(), nats_pid, engine.info["admin_pid"]]:
            assert not pid_alive(pid), f"pid {pid} survived titan run"
        assert pgid_members(engine.info["actors_pgid"]) == []
        assert not (engine.data_dir / "run" / "engine.json").exists()
        assert "titan: stopped" in engine.output()
        assert not (engine.data_dir / "logs" / "crash.log").exists(), "an actor crashed on its way out"
    finally:
        engine.kill_all()
    assert engine.leftovers() == []


def test_titan_stop_stops_a_running_engine(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path).start()
    try:
        stopped = _titan(engine, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert engine.proc.wait(30) == 0
        again = _titan(engine, "status")
        assert again.returncode == 1 and "no engine is running" in again.stderr
    finally:
        engine.kill_all()
    assert engine.leftovers() == []


def test_a_second_titan_run_on_the_same_data_dir_or_socket_refuses_to_start(
    engine: RunningEngine, tmp_path: Path
) -> None:
    same_dir = subprocess.run(titan_cmd("run", "--config", str(engine.config)), env=engine.env,
                              capture_output=True, text=True, timeout=60)
    assert same_dir.returncode == 1
    assert f"another titan run (pid {engine.proc.pid}) uses the data dir" in same_dir.stderr
    other = tmp_path / "other"
    other.mkdir()
    env = {**engine.env, "TITAN_DATA_DIR": str(other / "data")}
    same_socket = subprocess.run(titan_cmd("run", "--config", str(engine.config)), env=env,
                                 capture_output=True, text=True, timeout=60)
    assert same_socket.returncode == 1
    assert f"uses the FastPath socket {engine.socket}" in same_socket.stderr
    # The refused starts touched nothing of the running engine.
    assert (engine.data_dir / "run" / "engine.json").exists()
    assert set(engine.pids()) == ROLES


@pytest.mark.parametrize(
    ("toml", "env", "named"),
    [
        ("[supervision]\nintensity = -1\n", {}, "supervision.intensity"),
        ("[engine]\nlog_level = 'LOUD'\n", {}, "engine.log_level"),
        ("[engine]\ndata_dirr = 'x'\n", {}, "engine.data_dirr: unknown key"),
        ("[venues.main]\nexchange = 'bybit'\n[routing]\ndefault_venue = 'main'\n", {},
         "venues.main.api_key"),
        ("[routing]\ndefault_venue = 'nowhere'\n", {}, "routing.default_venue"),
        ("[positions]\nsymbols = ['btc/usdt']\n", {}, "positions.symbols"),
        ("", {"TITAN_HMAC_SECRET": "short"}, "ipc.hmac_secret"),
        ("[engine\n", {}, "not valid TOML"),
    ],
)
def test_invalid_config_stops_the_start_with_a_message_naming_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], named: str
) -> None:
    config = tmp_path / "titan.toml"
    config.write_text(toml)
    result = subprocess.run(
        titan_cmd("run", "--config", str(config), "--data-dir", str(tmp_path / "data")),
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert named in result.stderr
    assert result.stderr.startswith("titan: config error:")
    assert not (tmp_path / "data" / "run" / "engine.json").exists()


def test_when_the_root_gives_up_titan_run_kills_every_process_and_exits_non_zero(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION.replace("intensity = 20", "intensity = 0"))
    engine.start()
    try:
        pids = engine.pids()
        engine.control({"cmd": "fault", "role": "risk"})
        assert engine.proc.wait(30) == 4
        assert "fatal: the root supervisor gave up" in engine.output()
        for pid in [*pids.values(), engine.info["nats_pid"], engine.info["admin_pid"]]:
            wait_for(lambda pid=pid: not pid_alive(pid), 5.0, 0.05, f"pid {pid} gone")
    finally:
        engine.kill_all()
    assert engine.leftovers() == []


def test_when_the_thespian_admin_dies_titan_run_kills_the_tree_and_exits_non_zero(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path).start()
    try:
        pids = engine.pids()
        os.kill(engine.info["admin_pid"], signal.SIGKILL)
        assert engine.proc.wait(30) == 3
        assert "fatal: the thespian Admin died" in engine.output()
        for pid in [*pids.values(), engine.info["nats_pid"]]:
            wait_for(lambda pid=pid: not pid_alive(pid), 5.0, 0.05, f"pid {pid} gone")
    finally:
        engine.kill_all()
    assert engine.leftovers() == []


def test_titan_status_without_a_running_engine_says_so(tmp_path: Path) -> None:
    result = subprocess.run(titan_cmd("status", "--data-dir", str(tmp_path / "nothing")),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "no engine is running on the data dir" in result.stderr


def test_thespian_listens_on_loopback_only(engine: RunningEngine) -> None:
    inodes = set()
    for pid in [*engine.pids().values(), engine.info["admin_pid"]]:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:
            listening.append(fields[1].split(":")[0])
    assert listening, "the actors must have listening sockets"
    assert set(listening) == {"0100007F"}, f"non-loopback listeners: {listening}"


def test_bench_lanes_prints_figures_for_memory_lanes_and_thespian(tmp_path: Path) -> None:
    result = subprocess.run(
        titan_cmd("bench", "lanes", "--count", "3000", "--thespian-count", "100", "--rtt", "50", "--json"),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert set(figures) == {"memory", "lane", "thespian"}
    for via, count in (("memory", 3000), ("lane", 3000), ("thespian", 100)):
        assert figures[via]["messages"] == count
        assert figures[via]["msgs_per_s"] > 0
        assert figures[via]["round_trips"] == 50
        assert 0 < figures[via]["rtt_p50_us"] <= figures[via]["rtt_p99_us"]


@pytest.mark.parametrize("profile", ["packed", "isolated"])
def test_bench_fastpath_prints_latency_throughput_the_floor_memory_and_cpu_per_signal(profile: str) -> None:
    result = subprocess.run(
        titan_cmd("bench", "fastpath", "--rate", "200", "--duration", "2", "--connections", "2",
                  "--profile", profile, "--json"),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    engine, floor = figures["engine"], figures["floor"]
    assert engine["errors"] == {} and engine["signals"] >= 200
    for side in (engine, floor):
        for phase in ("prepare_ms", "confirm_ms"):
            p = side[phase]
            assert 0 < p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"] <= p["max"]
    # packed: the signal path is one worker (t:core); isolated: a process per actor.
    path = ("t:core",) if profile == "packed" else ("t:gateway", "t:risk", "t:venue:paper")
    assert engine["memory"]["processes"] >= (6 if profile == "packed" else 10)
    assert engine["memory"]["pss_kb"] > 0
    cpu = engine["cpu_us_per_signal"]
    for name in (*path, "t:nats", "nats-server", "load generator"):
        assert cpu[name] > 0, name  # every process on the path did work for the signals


def test_titan_status_check_says_whether_the_engine_can_take_an_order_and_names_what_is_not(
        tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        ready = _titan(engine, "status", "--check")
        assert ready.returncode == 0 and "ready yes" in ready.stdout, ready.stderr
        engine.control({"cmd": "venue_outage", "down": True})
        down = _titan(engine, "status", "--check", "--json")
        assert down.returncode == 1 and "not ready: venue:paper: the venue is down" in down.stderr
        status = json.loads(down.stdout)
        assert status["ready"] is False and status["components"]["venue:paper"]["ok"] is False
        engine.control({"cmd": "venue_outage", "down": False})
        wait_for(lambda: _titan(engine, "status", "--check").returncode == 0, 10, 0.2, "ready again")
        engine.pause("risk")  # as good as restarting: it answers nothing
        try:
            paused = _titan(engine, "status", "--check")
            assert paused.returncode == 1 and "risk" in paused.stderr and "ready no" in paused.stdout
        finally:
            engine.resume("risk")
        wait_for(lambda: _titan(engine, "status", "--check").returncode == 0, 10, 0.2, "ready after")
    finally:
        engine.stop()


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_engine_logs_json_lines_to_stderr_or_to_a_rotated_file(tmp_path: Path) -> None:
    for name in ("stderr", "file"):
        (tmp_path / name).mkdir()
    engine = RunningEngine(tmp_path / "stderr", FAST_SUPERVISION).start()
    try:
        engine.kill("risk")
        wait_for(lambda: any(r["level"] == "CRITICAL" for r in _json_lines(engine.output())), 10, 0.1,
                 "the kill logged")
    finally:
        engine.stop()
    records = _json_lines(engine.output())
    killed = next(r for r in records if r["level"] == "CRITICAL")
    assert killed["worker"] == ("core" if PROFILE == "packed" else "risk")
    assert "actor risk killed" in killed["message"]
    assert all({"ts", "level", "pid", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("role") == "root" and "child risk exited" in r["message"] for r in records)

    config = FAST_SUPERVISION + "[engine]\nlog_file = 'logs/engine.log'\nlog_max_bytes = 100000\n"
    to_file = RunningEngine(tmp_path / "file", config).start()
    try:
        to_file.kill("risk")
        log = to_file.data_dir / "logs" / "engine.log"
        wait_for(lambda: log.exists() and "actor risk killed" in log.read_text(), 10, 0.1,
                 "logged to the file")
    finally:
        to_file.stop()
    assert _json_lines(log.read_text()) and not _json_lines(to_file.output())
