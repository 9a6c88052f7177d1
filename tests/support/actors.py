"""Actors for tests that need misbehaviour on purpose (importable: thespian
children must not be defined in `__main__`)."""

from __future__ import annotations

import os
import time

from titan_actors.runtime.actor import TitanActor

__all__ = ["CrashAtStart", "Recorder", "Steady"]


def _note_start(config: dict) -> None:
    path = config.get("starts_file")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.monotonic()} {os.getpid()}\n")


class Steady(TitanActor):
    """Starts and stays up; notes every start in `starts_file` and every
    orderly stop in `stops_file`. Told "exit-normally", it exits the way an
    OTP `normal` exit does."""

    def on_start(self) -> None:
        _note_start(self.config)

    def on_stop(self) -> None:
        path = self.config.get("stops_file")
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{self.role} {time.monotonic()}\n")

    def handle(self, msg: object, sender: object) -> None:
        if msg == "exit-normally":
            self.exit_normally()
        elif msg == "raise":
            raise RuntimeError("told to raise")
        else:
            super().handle(msg, sender)


class CrashAtStart(TitanActor):
    """Fails in `on_start`, every time; notes every attempt in `starts_file`."""

    def on_start(self) -> None:
        _note_start(self.config)
        raise RuntimeError("CrashAtStart fails at start, as told")


class Recorder(TitanActor):
    """Notes, in one list shared by the test, every message it handles and
    every end of its batches; forwards `("tell", role, msg)` and raises on
    "boom"."""

    journal: list[str] = []

    def handle(self, msg: object, sender: object) -> None:
        if msg == "boom":
            raise RuntimeError("boom, as told")
        if isinstance(msg, tuple) and msg[0] == "tell":
            self.tell(msg[1], msg[2])
            self.journal.append(f"{self.role}:tell:{msg[2]}")
        else:
            self.journal.append(f"{self.role}:{msg}")

    def end_of_batch(self) -> None:
        self.journal.append(f"{self.role}:end")
