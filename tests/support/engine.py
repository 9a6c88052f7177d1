"""Running a real `titan run` for a test, and cleaning up after it.

The engine runs in its own session (so its process group can be killed as
a whole), on its own data dir, FastPath socket and ports. Teardown stops it
with SIGTERM, then SIGKILLs whatever is left of the three process groups it
made (titan run's, the actors' and the embedded nats-server's) and checks
that nothing survived.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from supervisors.bootstrap import read_engine_file
from titan_actors.control import ControlError, EngineNotRunning, control_request
from titan_actors.procs import pgid_members

__all__ = ["RunningEngine", "titan_cmd", "wait_for", "write_config"]

FAST_SUPERVISION = """
[supervision]
intensity = 20
period_s = 10
backoff_initial_s = 0.02
backoff_max_s = 0.5
"""


def titan_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "titan_actors.cli", *args]


def write_config(path: Path, text: str = FAST_SUPERVISION) -> Path:
    path.write_text(text)
    return path


def wait_for(predicate: Any, timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class RunningEngine:
    def __init__(self, tmp: Path, config_text: str = FAST_SUPERVISION) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "data"
        self.socket = str(tmp / "fastpath.sock")
        self.config = write_config(tmp / "titan.toml", config_text)
        self.env = {**os.environ, "TITAN_DATA_DIR": str(self.data_dir), "TITAN_IPC_SOCKET": self.socket}
        self.env.pop("NATS_URL", None)
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self.pgids: set[int] = set()
        self.nats_pids: set[int] = set()

    def start(self, timeout: float = 60.0) -> RunningEngine:
        self.out = open(self.tmp / "titan-run.out", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            titan_cmd("run", "--config", str(self.config)), env=self.env, stdout=self.out,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.pgids.add(self.proc.pid)
        wait_for(self._engine_file, timeout, 0.05, "engine.json")
        return self

    def _engine_file(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"titan run exited with {self.proc.returncode}:\n{self.output()}")
        info = read_engine_file(self.data_dir)
        if info is None:
            return False
        self.info = info
        self.pgids.add(info["actors_pgid"])
        if info.get("nats_pid"):
            self.nats_pids.add(info["nats_pid"])
        return True

    def output(self) -> str:
        return (self.tmp / "titan-run.out").read_text()

    def control(self, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        return control_request(self.data_dir, request, timeout)

    def status(self) -> dict[str, Any]:
        status = self.control({"cmd": "status"})
        self.pgids.add(status["actors_pgid"])
        if status.get("nats_pid"):
            self.nats_pids.add(status["nats_pid"])
        return status

    def pids(self) -> dict[str, int]:
        return {a["role"]: a["pid"] for a in self.status()["actors"]}

    def actor(self, role: str) -> dict[str, Any]:
        return next(a for a in self.status()["actors"] if a["role"] == role)

    def wait_whole(self, expected: set[str], timeout: float = 10.0) -> dict[str, int]:
        """Until every expected role answers status and none is missing."""

        def whole() -> dict[str, int] | None:
            try:
                status = self.status()
            except (ControlError, EngineNotRunning):
                return None
            pids = {a["role"]: a["pid"] for a in status["actors"]}
            return pids if expected <= set(pids) and not status["missing"] else None

        return wait_for(whole, timeout, 0.02, f"the whole tree {sorted(expected)}")

    def stop(self) -> int | None:
        """SIGTERM, wait, then kill every group we made; returns titan run's exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    code = self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            else:
                code = self.proc.returncode
        self.kill_all()
        return code

    def kill_all(self) -> None:
        for pgid in self.pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for pid in self.nats_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if hasattr(self, "out"):
            self.out.close()

    def leftovers(self) -> list[int]:
        left = [pid for pgid in self.pgids for pid in pgid_members(pgid)]
        left += [pid for pid in self.nats_pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        return left


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return False


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
