"""Starting, watching and stopping one engine: the actor system, the root
supervisor, the embedded nats-server.

The `Engine` lives in the `titan run` process (or a test). It is not an
actor. It

- refuses to start when another engine holds the data dir (a lock file) or
  serves the FastPath socket;
- creates the HMAC secret file when `TITAN_HMAC_SECRET` is unset;
- starts nats-server (unless `NATS_URL` is set) and the thespian system with
  its TCP sockets on loopback;
- creates the root supervisor and waits until every role of the tree is up;
- `check()`: the watchdog step. The thespian Admin dead, or the root gone
  after giving up, is fatal (the caller kills the actors' process group and
  exits non-zero). A root that was killed is created again (the tree comes
  back whole); a dead embedded nats-server is restarted;
- `stop()`: the tree in reverse order, the actor system, nats-server, and
  then SIGKILL for anything of the actors' process group still alive.

The thespian Admin daemonizes into its own process group (we measured it):
that group, `actors_pgid`, holds every actor, and it is written to
`<data>/run/engine.json` so that tools and tests can reach it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisors.embedded_nats import EmbeddedNats, free_port
from supervisors.policy import Intensity
from supervisors.tree import ROOT_ROLE, SUPERVISOR, expected_roles, placement_of, root_config
from titan_actors.config import Config
from titan_actors.messages import (
    ChildStarted,
    Directory,
    EngineInfo,
    GetDirectory,
    Init,
    StopTree,
    TreeStatus,
    TreeStatusRequest,
    TreeStopped,
)
from titan_actors.runtime.actorsystem import open_actor_system
from titan_actors.runtime.files import open_lock_file, private_dir, socket_is_live
from titan_actors.runtime.placement import ROOT_WORKER
from titan_actors.runtime.procs import hostname, parent_of, pgid_alive, pgid_members, pid_alive
from titan_actors.runtime.protocol import KillRole, Routed, StartCell, WorkerInit
from titan_actors.runtime.worker import WORKER_CLASS
from titan_actors.secret import (
    API_TOKEN_FILE,
    NATS_AUTH_FILE,
    OPERATOR_TOKEN_FILE,
    ensure_nats_auth,
    ensure_secret,
    redact_url,
)

__all__ = [
    "Engine",
    "EngineError",
    "EngineRunning",
    "Fatal",
    "pgid_alive",
    "pgid_members",
    "read_engine_file",
]

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The engine could not start or was found broken."""


class EngineRunning(EngineError):
    """Another live engine holds the data dir or serves the socket."""


@dataclass(frozen=True, slots=True)
class Fatal:
    """What `Engine.check()` reports when the engine must end."""

    reason: str
    exit_code: int


def read_engine_file(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / "run" / "engine.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _flock(path: Path, what: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise EngineRunning(f"another titan run (pid {holder}) uses {what}")
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _trading_ready(tree: TreeStatus) -> bool:
    """The risk guard has rebuilt its view, the gateway knows the trading
    states, and every position is reconciled."""
    for actor in tree.actors:
        if actor.role == "risk" and actor.detail.get("rebuilding"):
            return False
        if actor.role == "gateway" and not (actor.detail.get("trading_states_known")
                                            and actor.detail.get("serving")):
            return False
        if actor.role.startswith("position:") and not all(actor.detail.get("reconciled", {}).values()):
            return False
    return True


class Engine:
    """See the module docstring."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.run_dir = self.data_dir / "run"
        self.engine_id = uuid.uuid4().hex[:12]
        self.asys: Any = None
        self.root: Any = None
        self.root_pid = 0
        self.admin_pid = 0
        self.actors_pgid = 0
        self.nats: EmbeddedNats | None = None
        self.nats_url = config["nats.url"]
        self.root_restarts = 0
        # The watchdog is the root's parent: the same intensity as every supervisor.
        self._root_intensity = Intensity(config["supervision.intensity"], config["supervision.period_s"])
        self._lock_fds: list[int] = []
        self.marker = self.run_dir / "root-gave-up"

    # --- start ----------------------------------------------------------------

    def start(self, ready_timeout: float = 60.0) -> None:
        self._prepare_dirs()
        self._lock()
        try:
            sock = self.config["ipc.socket"]
            if socket_is_live(sock):
                raise EngineRunning(f"a live engine already serves the FastPath socket {sock}")
            ensure_secret(self.data_dir, self.config["ipc.hmac_secret"])
            if self.config["http.listen"] != "off":
                ensure_secret(self.data_dir, self.config["http.api_token"], name=API_TOKEN_FILE)
                ensure_secret(self.data_dir, self.config["http.operator_token"], name=OPERATOR_TOKEN_FILE)
            self.marker.unlink(missing_ok=True)
            if not self.nats_url:
                self.nats = EmbeddedNats(
                    self.data_dir / "nats-server",
                    auth=ensure_nats_auth(self.data_dir),
                    port=self.config["nats.embedded_port"],
                    monitor_port=self.config["nats.embedded_monitor_port"],
                    log_file=self.data_dir / "logs" / "nats-server.log",
                )
                self.nats.start()
                self.nats_url = self.nats.url
            self._start_actor_system()
            self._start_root()
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def _prepare_dirs(self) -> None:
        # Everything the engine and its children create is private to its user.
        os.umask(0o077)
        for sub in ("", "run", "logs"):
            private_dir(self.data_dir / sub)

    def _lock(self) -> None:
        """Hold the data dir and the FastPath socket path for this engine's life.

        flock locks die with the process, so a crashed engine never blocks the
        next start."""
        sock = self.config["ipc.socket"]
        try:
            self._lock_fds.append(_flock(self.run_dir / "titan.lock", f"the data dir {self.data_dir}"))
            self._lock_fds.append(_flock(Path(sock + ".lock"), f"the FastPath socket {sock}"))
        except EngineRunning:
            self._unlock()
            raise

    def _unlock(self) -> None:
        while self._lock_fds:
            os.close(self._lock_fds.pop())

    def _log_defs(self) -> dict[str, Any]:
        """Thespian's logging process writes every process's records: JSON lines
        (`runtime.logs`) or plain text, to stderr (journald) or a rotated file."""
        level = self.config["engine.log_level"]
        formatter = ({"()": "titan_actors.runtime.logs.JsonFormatter"}
                     if self.config["engine.log_format"] == "json" else
                     {"format": "%(asctime)s %(levelname)s pid=%(process)d %(name)s: %(message)s"})
        target = self.config["engine.log_file"]
        if target:
            path = Path(target) if Path(target).is_absolute() else self.data_dir / target
            handler: dict[str, Any] = {
                "class": "logging.handlers.RotatingFileHandler", "filename": str(path),
                "maxBytes": self.config["engine.log_max_bytes"],
                "backupCount": self.config["engine.log_backups"]}
        else:
            handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
        return {
            "version": 1,
            "formatters": {"engine": formatter},
            "handlers": {"engine": {**handler, "formatter": "engine", "level": level}},
            "root": {"handlers": ["engine"], "level": level},
        }

    def _start_actor_system(self) -> None:
        os.environ["THESPLOG_FILE"] = str(self.data_dir / "logs" / "thespian.log")
        os.environ.setdefault("THESPLOG_THRESHOLD", "WARNING")
        self.admin_port = self.config["engine.admin_port"] or free_port()
        self.asys = open_actor_system(admin_port=self.admin_port, log_defs=self._log_defs())

    def engine_info(self) -> EngineInfo:
        return EngineInfo(
            engine_id=self.engine_id,
            data_dir=str(self.data_dir),
            host=hostname(),
            log_level=self.config["engine.log_level"],
            fsync=self.config["engine.fsync"],
            retention_ms=int(self.config["engine.retention_days"] * 86_400_000),
        )

    def _start_root(self) -> None:
        self.marker.unlink(missing_ok=True)
        self.root = self.asys.createActor(WORKER_CLASS)
        init = Init(
            role=ROOT_ROLE,
            engine=self.engine_info(),
            config=root_config(self.config, nats_url=self.nats_url, gave_up_marker=str(self.marker),
                               nats_auth_file=str(self.data_dir / NATS_AUTH_FILE) if self.nats else ""),
        )
        first = StartCell(SUPERVISOR, init, supervisor="", cell=time.time_ns() // 1000)
        started = self.asys.ask(self.root, WorkerInit(name=ROOT_WORKER, engine=init.engine,
                                                      placement=placement_of(self.config),
                                                      parent_pid=0, first=first), 30)
        if not isinstance(started, ChildStarted):
            raise EngineError(f"the root supervisor did not start: {started!r}")
        self.root_pid = started.peer.pid
        self.actors_pgid = started.peer.pgid
        self.admin_pid = parent_of(self.root_pid)

    def wait_ready(self, timeout: float) -> TreeStatus:
        """Until every role of the tree is in the directory and answers status."""
        want = expected_roles(self.config)
        deadline = time.monotonic() + timeout
        last: TreeStatus | None = None
        while time.monotonic() < deadline:
            last = self.tree_status(timeout=2.0)
            if last is not None:
                have = {a.role for a in last.actors}
                if want <= have and not last.missing and _trading_ready(last):
                    return last
            time.sleep(0.05)
        missing = sorted(want - {a.role for a in last.actors}) if last else sorted(want)
        raise EngineError(f"the tree did not come up within {timeout}s; missing: {missing}")

    def publish(self) -> None:
        """Write `<data>/run/engine.json`: the engine is up and its control
        socket (opened by the caller before this) answers."""
        self._write_engine_file()

    def _write_engine_file(self) -> None:
        info = {
            "pid": os.getpid(),
            "engine_id": self.engine_id,
            "actors_pgid": self.actors_pgid,
            "admin_pid": self.admin_pid,
            "admin_port": self.admin_port,
            "root_pid": self.root_pid,
            "nats_url": redact_url(self.nats_url),
            "nats_pid": self.nats.pid if self.nats else 0,
            "socket": self.config["ipc.socket"],
            "data_dir": str(self.data_dir),
            "started_at": time.time(),
        }
        tmp = self.run_dir / "engine.json.tmp"
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(self.run_dir / "engine.json")

    # --- queries --------------------------------------------------------------

    def tree_status(self, timeout: float | None = None) -> TreeStatus | None:
        timeout = timeout or self.config["engine.status_timeout_s"]
        reply = self.asys.ask(self.root, TreeStatusRequest(timeout_s=timeout * 0.8), timeout)
        return reply if isinstance(reply, TreeStatus) else None

    def directory(self, timeout: float = 2.0) -> Directory | None:
        reply = self.asys.ask(self.root, GetDirectory(), timeout)
        return reply if isinstance(reply, Directory) else None

    def _peer(self, role: str) -> Any:
        directory = self.directory()
        peer = directory.get(role) if directory else None
        if peer is None:
            raise EngineError(f"no actor has the role {role!r} now")
        return peer

    def ask_role(self, role: str, msg: Any, timeout: float = 2.0) -> Any:
        return self.asys.ask(self._peer(role).address, Routed(role, None, msg), timeout)

    def tell_role(self, role: str, msg: Any) -> None:
        self.asys.tell(self._peer(role).address, Routed(role, None, msg))

    def kill(self, role: str, *, worker: bool = False) -> dict[str, Any]:
        """End `role` abruptly wherever it runs, or SIGKILL its worker."""
        peer = self._peer(role)
        self.asys.tell(self.root, KillRole(role, worker))
        return {"role": role, "worker": peer.worker, "pid": peer.pid, "cell": peer.cell}

    # --- the watchdog ---------------------------------------------------------

    def check(self) -> Fatal | None:
        """One watchdog step; see the module docstring."""
        if not pid_alive(self.admin_pid):
            return Fatal("the thespian Admin died", 3)
        if not pid_alive(self.root_pid):
            if self.marker.exists():
                return Fatal(f"the root supervisor gave up: {self.marker.read_text().strip()}", 4)
            if not self._root_intensity.record(time.monotonic()):
                return Fatal("the root supervisor died too often", 4)
            self.root_restarts += 1
            log.error("the root supervisor died; starting the tree again")
            try:
                self._start_root()
                self._write_engine_file()
            except Exception as exc:
                return Fatal(f"the root supervisor could not be restarted: {exc}", 4)
        if self.nats is not None and self.nats.ensure_running():
            log.error("the embedded nats-server died; restarted it")
            self._write_engine_file()
        return None

    # --- stop -----------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> None:
        """Orderly stop: the tree in reverse order, then the system, then NATS."""
        try:
            if self.asys is not None and self.root is not None and pid_alive(self.root_pid):
                reply = self.asys.ask(self.root, StopTree("engine stop"), timeout)
                if not isinstance(reply, TreeStopped):
                    log.error("the tree did not stop in %ss; killing it", timeout)
            if self.asys is not None:
                self._shutdown_actor_system(timeout)
        finally:
            self.asys = None
            self.kill_actors()
            if self.nats is not None:
                self.nats.stop()
            (self.run_dir / "engine.json").unlink(missing_ok=True)
            self._unlock()

    def _shutdown_actor_system(self, timeout: float) -> None:
        """`ActorSystem.shutdown()` can block forever (seen when the root died
        during a stop); bound it: what is left is killed right after."""
        worker = threading.Thread(target=self.asys.shutdown, name="titan-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            log.error("the actor system did not shut down in %ss; killing its processes", timeout)

    def kill_actors(self) -> None:
        """SIGKILL whatever is left of the actors' process group."""
        pgid = self.actors_pgid
        if pgid and pgid != os.getpgid(0):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while pgid_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.02)
