"""Nobody else gets in through thespian's TCP ports.

Thespian unpickles whatever arrives on an actor's port, and unpickling runs
code. Another user on the host connects to every TCP port the engine's
processes listen on and sends a pickle that would create a file: no file
appears and the engine keeps trading.
"""

from __future__ import annotations

import builtins
import pickle
import socket
import time
from pathlib import Path

from tests.support.engine import RunningEngine
from tests.support.intruder import as_nobody, listening_ports


class _CreatesAFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (builtins.open, (self.path, "w"))


def _thespian_frame(payload: bytes) -> bytes:
    return b"%d>" % len(payload) + payload


def test_another_user_cannot_make_the_engine_unpickle_anything(engine: RunningEngine, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    nats_port = int(engine.info["nats_url"].rsplit(":", 1)[1])
    engine_pids = [p for p in engine.processes() if p not in engine.nats_pids]
    ports = listening_ports(engine_pids) - {nats_port}
    assert len(ports) >= 3, f"expected the Admin's and the workers' ports, found {ports}"
    frame = _thespian_frame(pickle.dumps(_CreatesAFile(str(marker))))
    cells = engine.cells()

    def attack() -> dict[int, str]:
        outcome = {}
        for port in sorted(ports):
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.settimeout(2)
                    sock.connect(("127.0.0.1", port))
                    sock.sendall(frame)
                    outcome[port] = "answered" if sock.recv(64) else "closed"
            except OSError as exc:
                outcome[port] = type(exc).__name__
        return outcome

    outcome = as_nobody(attack)
    assert set(outcome) == ports
    time.sleep(0.5)  # give a slow unpickle its chance
    assert not marker.exists(), f"the engine ran a stranger's pickle (ports: {outcome})"
    with engine.client() as client:
        assert client.prepare("after-intruder", "BTCUSDT", "buy", 0.01)["type"] == "PREPARED"
        assert client.confirm("after-intruder")["type"] == "ACCEPTED"
    assert engine.cells() == cells, "no actor crashed or restarted"
