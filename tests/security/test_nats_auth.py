"""The engine's NATS: the embedded server admits only the engine's own
credentials; an external server is reached with the credentials configured
the usual ways, and none of them reaches a log or `titan status`."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.errors import NoServersError

from supervisors.embedded_nats import find_nats_server, free_port
from tests.support.engine import RunningEngine, titan_cmd, wait_for
from tests.support.nats import command, signed
from titan_actors.actors.nats_bridge import connect_options
from titan_actors.secret import read_nats_auth, redact_url
from titan_actors.wire import subjects


def _connect_fails(url: str) -> str:
    async def run() -> str:
        try:
            nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
        except (NoServersError, nats.errors.Error, OSError) as exc:
            return type(exc).__name__ + ": " + str(exc)
        await nc.close()
        return ""

    return asyncio.run(run())


def test_the_embedded_server_refuses_anonymous_and_wrong_password_clients(engine: RunningEngine) -> None:
    plain = engine.info["nats_url"]
    assert "@" not in plain
    assert "Authorization" in _connect_fails(plain)
    wrong = plain.replace("nats://", "nats://titan:not-the-password@")
    assert _connect_fails(wrong)
    # The engine's own clients get in: the bridge is connected and a signed command is answered.
    assert engine.actor("nats")["detail"]["connected"] is True
    reply = command(engine.nats_url, subjects.CMD_STATUS,
                    *signed(subjects.CMD_STATUS, {}, engine.operator_secret))
    assert reply["trading_state"] == "ACTIVE"


def test_the_embedded_credentials_are_private_and_never_shown(engine: RunningEngine) -> None:
    password = read_nats_auth(engine.data_dir)["password"]
    for name in ("nats.auth", "nats-server.conf"):
        mode = stat.S_IMODE(os.stat(engine.data_dir / name).st_mode)
        assert mode == 0o600, f"{name} has mode {mode:04o}"
    for pid in engine.processes():
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            assert password.encode() not in fh.read(), f"the password is on the command line of {pid}"
    shown = subprocess.run(titan_cmd("status", "--json"), env=engine.env, capture_output=True, text=True)
    assert shown.returncode == 0 and password not in shown.stdout + shown.stderr
    logs = [engine.workdir / "titan-run.out", *(engine.data_dir / "logs").glob("*")]
    for path in logs:
        assert password not in path.read_text(errors="replace"), f"the password is in {path}"


@pytest.fixture
def external_nats(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """A nats-server of the operator's own, with a token or a user."""
    servers = []

    def start(*auth: str) -> int:
        port = free_port()
        proc = subprocess.Popen([find_nats_server(), "-a", "127.0.0.1", "-p", str(port), "-js",
                                 "-sd", str(tmp_path / f"js-{port}"), *auth],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        servers.append(proc)
        wait_for(lambda: not _connect_fails(f"nats://{auth[1]}@127.0.0.1:{port}" if auth[0] == "--auth"
                                            else f"nats://{auth[1]}:{auth[3]}@127.0.0.1:{port}"), 10, 0.05,
                 "the external nats-server")
        return port

    yield start  # type: ignore[misc]
    for proc in servers:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("how", ["token in NATS_TOKEN", "user and password in NATS_URL"])
def test_an_external_server_is_reached_with_the_configured_credentials(
        tmp_path: Path, external_nats, how: str) -> None:
    secret = "external-credential-0123456789"
    engine = RunningEngine(tmp_path)
    if how.startswith("token"):
        port = external_nats("--auth", secret)
        engine.env["NATS_URL"] = f"nats://127.0.0.1:{port}"
        engine.env["NATS_TOKEN"] = secret
    else:
        port = external_nats("--user", "ops", "--pass", secret)
        engine.env["NATS_URL"] = f"nats://ops:{secret}@127.0.0.1:{port}"
    assert _connect_fails(f"nats://127.0.0.1:{port}"), "the external server itself refuses anonymous clients"
    engine.start()
    try:
        wait_for(lambda: engine.actor("nats")["detail"]["connected"], 10, 0.05, "the bridge connected")
        status = engine.status()
        assert secret not in str(status)
        assert engine.info["nats_url"] == redact_url(engine.env["NATS_URL"])
    finally:
        engine.stop()
    assert engine.leftovers() == []
    for path in [engine.workdir / "titan-run.out", *(engine.data_dir / "logs").glob("*")]:
        assert secret not in path.read_text(errors="replace"), f"the credential is in {path}"


def test_connect_options_take_every_usual_credential(tmp_path: Path) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text("creds")
    opts = connect_options({"url": "nats://h:4222", "token": "t", "creds_file": str(creds),
                            "user": "u", "password": "p"})
    assert (opts["token"], opts["user_credentials"]) == ("t", str(creds))
    assert (opts["user"], opts["password"]) == ("u", "p")
    assert redact_url("nats://u:p@h:4222") == "nats://u:***@h:4222"
    assert redact_url("nats://tok@h:4222") == "nats://***@h:4222"
    assert redact_url("nats://h:4222") == "nats://h:4222"
