"""Files and sockets: nothing another user put in the engine's way is
followed, removed or trusted; what the engine writes is private to its user."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import RunningEngine, titan_cmd, wait_for
from tests.support.intruder import NOBODY, as_nobody
from titan_actors.runtime.files import UnsafeFileError, bind_unix_socket


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory like /tmp: everyone may create files, the sticky bit on."""
    path = Path(tempfile.mkdtemp(prefix="titan-shared-", dir="/tmp"))
    os.chmod(path, 0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _start_fails(engine: RunningEngine) -> str:
    run = subprocess.run(titan_cmd("run", "--config", str(engine.config)), env=engine.env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0, run.stdout
    return run.stderr


def _engine_at(tmp_path: Path, sock: Path) -> RunningEngine:
    engine = RunningEngine(tmp_path)
    engine.socket = str(sock)
    engine.env["TITAN_IPC_SOCKET"] = str(sock)
    return engine


def test_another_users_file_at_the_socket_path_is_refused_and_left_alone(
        tmp_path: Path, shared_dir: Path) -> None:
    sock = shared_dir / "titan.sock"
    sock.write_text("theirs")
    os.chown(sock, NOBODY, NOBODY)
    error = _start_fails(_engine_at(tmp_path, sock))
    assert str(sock) in error and f"belongs to uid {NOBODY}" in error
    assert sock.read_text() == "theirs" and sock.stat().st_uid == NOBODY


def test_a_link_at_the_socket_path_or_its_lock_is_never_followed(tmp_path: Path, shared_dir: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep")
    for name in ("titan.sock", "titan.sock.lock"):
        link = shared_dir / name
        link.symlink_to(target)
        workdir = tmp_path / name
        workdir.mkdir()
        error = _start_fails(_engine_at(workdir, shared_dir / "titan.sock"))
        assert "symbolic link" in error, error
        assert target.read_text() == "keep" and link.is_symlink()
        for leftover in shared_dir.iterdir():
            leftover.unlink()


def test_a_stale_socket_of_ours_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    first = bind_unix_socket(path)
    with pytest.raises(UnsafeFileError, match="a live engine already serves it"):
        bind_unix_socket(path)
    first.close()  # the file stays: a dead engine's socket
    second = bind_unix_socket(path)
    try:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir()] == ["s.sock"], "the private bind directory is gone"
    finally:
        second.close()


def test_a_secret_file_with_the_wrong_mode_or_owner_is_refused(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path)
    engine.env.pop("TITAN_HMAC_SECRET")
    engine.data_dir.mkdir(mode=0o700)
    secret = engine.data_dir / "hmac.secret"
    secret.write_text("x" * 64)
    os.chmod(secret, 0o644)
    assert "chmod 600" in _start_fails(engine)
    os.chmod(secret, 0o600)
    os.chown(secret, NOBODY, NOBODY)
    assert f"belongs to uid {NOBODY}" in _start_fails(engine)


def test_everything_the_engine_writes_is_private_to_its_user(engine: RunningEngine) -> None:
    with engine.client() as client:  # make the stores write
        client.prepare("private-1", "BTCUSDT", "buy", 0.01)
        client.confirm("private-1")
    open_to_others = []
    for root, dirs, files in os.walk(engine.data_dir):
        for name in [*dirs, *files]:
            info = os.lstat(os.path.join(root, name))
            if info.st_mode & 0o077 and not stat.S_ISLNK(info.st_mode):
                open_to_others.append(f"{os.path.join(root, name)} {stat.S_IMODE(info.st_mode):04o}")
    assert stat.S_IMODE(os.stat(engine.data_dir).st_mode) == 0o700
    assert open_to_others == []
    assert stat.S_IMODE(os.lstat(engine.socket).st_mode) == 0o600


def test_no_other_user_can_bind_the_socket_path_while_the_gateway_restarts(
        tmp_path: Path, shared_dir: Path) -> None:
    sock = shared_dir / "titan.sock"
    engine = _engine_at(tmp_path, sock).start()
    try:
        stop = threading.Event()
        result: dict[str, int] = {}

        def squat() -> None:
            path = str(sock)

            def attempt() -> int:
                bound, deadline = 0, time.monotonic() + 5.0
                while time.monotonic() < deadline:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        try:
                            s.bind(path)
                            bound += 1
                            os.unlink(path)
                        except OSError:
                            pass
                return bound

            result["bound"] = as_nobody(attempt, timeout=120)
            stop.set()

        squatter = threading.Thread(target=squat)
        squatter.start()
        restarts = 0
        while not stop.is_set() and restarts < 10:
            before = engine.cells()["gateway"]
            engine.kill("gateway")
            wait_for(lambda old=before: engine.cells().get("gateway") not in (None, old), 10, 0.01,
                     "a new gateway")
            engine.wait_serving()
            restarts += 1
        squatter.join(120)
        assert result == {"bound": 0}, "another user bound the FastPath path"
        assert os.lstat(sock).st_uid == os.getuid()
        with engine.client() as client:
            assert client.ping()["type"] == "PONG"
    finally:
        engine.stop()
    assert engine.leftovers() == []
