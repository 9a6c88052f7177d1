from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import RunningEngine
from tests.support.system import ActorSystemHarness


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[RunningEngine]:
    """A real `titan run` on a temp data dir; stopped and checked afterwards."""
    running = RunningEngine(tmp_path).start()
    try:
        yield running
    finally:
        running.stop()
        assert running.leftovers() == [], "the engine left processes behind"


@pytest.fixture
def actor_system(tmp_path: Path) -> Iterator[ActorSystemHarness]:
    """A private thespian system for tests that build their own tree."""
    harness = ActorSystemHarness(tmp_path)
    try:
        yield harness
    finally:
        harness.shutdown()
        assert harness.leftovers() == [], "the actor system left processes behind"
