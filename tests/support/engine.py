"""A real `titan run` for a test, with the helpers tests use.

Each engine gets its own data dir, FastPath socket, HMAC secret and ports;
teardown kills every process group it made and checks none survived.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from titan_actors.client import FastPathClient
from titan_actors.secret import nats_client_url
from titan_actors.tools.control import ControlError, EngineNotRunning
from titan_actors.tools.engine_process import EngineProcess, titan_cmd
from titan_actors.tools.engine_process import wait_for as _wait_for

__all__ = ["FAST_SUPERVISION", "PROFILE", "REAL_VENUE_LIMITS", "RunningEngine", "place", "rest", "titan_cmd",
           "wait_for"]

#: The placement profile of every engine the tests start (`TITAN_PLACEMENT`, default packed).
PROFILE = os.environ.get("TITAN_PLACEMENT") or "packed"

FAST_SUPERVISION = """
[supervision]
intensity = 20
period_s = 10
backoff_initial_s = 0.02
backoff_max_s = 0.5
"""


#: A venue with real credentials needs these (risk is never off by default);
#: high enough that no test order meets them.
REAL_VENUE_LIMITS = """
[risk]
max_order_notional = 1e12
max_position_notional = 1e12
daily_loss_limit = 1e12
"""


def wait_for(predicate: Any, timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    try:
        return _wait_for(predicate, timeout, interval, what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def place(client: Any, signal_id: str, side: str, qty: float, symbol: str = "BTCUSDT", **fields: Any) -> None:
    """PREPARE and CONFIRM an order, both answered as they should be."""
    assert client.prepare(signal_id, symbol, side, qty, **fields)["type"] == "PREPARED"
    assert client.confirm(signal_id)["type"] == "ACCEPTED"


def rest(client: Any, signal_id: str, symbol: str = "BTCUSDT", price: float = 50000.0) -> None:
    """A limit buy well below the market: it rests."""
    place(client, signal_id, "buy", 0.01, symbol, order_type="limit", price=price)


class RunningEngine(EngineProcess):
    def __init__(self, tmp: Path, config_text: str = FAST_SUPERVISION) -> None:
        self.tmp = tmp
        self.socket = str(tmp / "fastpath.sock")
        self.secret = secrets.token_hex(32).encode()
        self.operator_secret = secrets.token_hex(32).encode()
        super().__init__(tmp, config_text, {"TITAN_IPC_SOCKET": self.socket,
                                            "TITAN_HMAC_SECRET": self.secret.decode(),
                                            "TITAN_OPERATOR_SECRET": self.operator_secret.decode(),
                                            "TITAN_HTTP_LISTEN": "127.0.0.1:0"})
        self.env.pop("NATS_URL", None)

    @property
    def nats_url(self) -> str:
        """The engine's nats-server, with the credentials any client needs."""
        return nats_client_url(self.info["nats_url"], self.data_dir)

    def client(self, **kwargs: Any) -> FastPathClient:
        return FastPathClient(self.socket, self.secret, **kwargs).connect()

    def actor(self, role: str) -> dict[str, Any]:
        return next(a for a in self.status()["actors"] if a["role"] == role)

    def cells(self) -> dict[str, tuple[int, int]]:
        """Role → (pid, cell): what serves each role now; an actor restarted in
        its shared worker keeps the pid and gets a new cell."""
        return {a["role"]: (a["pid"], a["detail"]["cell"]) for a in self.status()["actors"]}

    def kill(self, role: str, *, worker: bool = False) -> dict[str, Any]:
        """`titan kill ROLE [--worker]`."""
        return self.control({"cmd": "kill", "role": role, "worker": worker})

    def wait_serving(self, timeout: float = 10.0) -> None:
        """Until the gateway serves the FastPath socket (after a restart it binds
        it only once the engine can take an order)."""
        def serving() -> bool:
            gateway = next((a for a in self.status()["actors"] if a["role"] == "gateway"), None)
            return gateway is not None and bool(gateway["detail"].get("serving"))  # None: restarting
        wait_for(serving, timeout, 0.05, "the gateway serving")

    def pause(self, role: str) -> None:
        """The actor holds every message until `resume`: what SIGSTOP did to a
        role with a process of its own, without stopping its neighbours."""
        self.control({"cmd": "fault", "role": role, "at": "pause"})

    def resume(self, role: str) -> None:
        self.control({"cmd": "fault", "role": role, "at": "resume"})

    def venue(self, name: str = "paper") -> dict[str, Any]:
        return self.actor(f"venue:{name}")["detail"]

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


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
