"""Running `titan run` as a child process, for the benchmark and the tests.

The engine runs in its own session (its own process group), on the data dir,
socket and config given. `stop()` sends SIGTERM and waits; `kill_all()` then
SIGKILLs whatever is left of every process group the engine made (titan
run's, the actors' — thespian's Admin makes its own — and the embedded
nats-server's), so nothing outlives its caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from supervisors.bootstrap import read_engine_file
from titan_actors.runtime.procs import pgid_members, pid_alive
from titan_actors.tools.control import control_request

__all__ = ["EngineProcess", "titan_cmd", "wait_for"]


def titan_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "titan_actors.cli", *args]


def wait_for(predicate: Any, timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class EngineProcess:
    def __init__(self, workdir: Path, config_text: str, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config = workdir / "titan.toml"
        self.config.write_text(config_text)
        self.env = {**os.environ, "TITAN_DATA_DIR": str(self.data_dir), **env}
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self.pgids: set[int] = set()
        self.nats_pids: set[int] = set()
        self._out: Any = None

    def start(self, timeout: float = 60.0) -> EngineProcess:
        self._out = open(self.workdir / "titan-run.out", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            titan_cmd("run", "--config", str(self.config)), env=self.env, stdout=self._out,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.pgids.add(self.proc.pid)
        wait_for(self._ready, timeout, 0.05, "engine.json")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"titan run exited with {self.proc.returncode}:\n{self.output()}")
        info = read_engine_file(self.data_dir)
        if info is None:
            return False
        self.info = info
        self.pgids.add(info["actors_pgid"])
        if info.get("nats_pid"):
            self.nats_pids.add(info["nats_pid"])
        return True

    def output(self) -> str:
        return (self.workdir / "titan-run.out").read_text()

    def control(self, request: dict[str, Any], timeout: float = 10.0, *,
                exact: bool = False) -> dict[str, Any]:
        """`control_request` on this engine (`exact`: numbers as Decimals)."""
        return control_request(self.data_dir, request, timeout, exact=exact)

    def status(self, *, exact: bool = False) -> dict[str, Any]:
        status = self.control({"cmd": "status"}, exact=exact)
        self.pgids.add(status["actors_pgid"])
        if status.get("nats_pid"):
            self.nats_pids.add(status["nats_pid"])
        return status

    def pids(self) -> dict[str, int]:
        return {a["role"]: a["pid"] for a in self.status()["actors"]}

    def processes(self) -> list[int]:
        """Every live process of the engine: titan run, actors, nats-server."""
        pids = [pid for pgid in self.pgids for pid in pgid_members(pgid)]
        return pids + [pid for pid in self.nats_pids if pid_alive(pid) and pid not in pids]

    def stop(self) -> int | None:
        """SIGTERM, wait, then kill every group we made; titan run's exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = self.proc.wait(30)
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
        if self._out is not None:
            self._out.close()
            self._out = None

    def leftovers(self) -> list[int]:
        return self.processes()
