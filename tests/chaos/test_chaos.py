"""The seeded, bounded chaos run (the long one is `titan chaos`, see README)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.engine import titan_cmd


@pytest.mark.parametrize("profile", ["packed", "isolated"])
def test_a_seeded_chaos_run_keeps_every_invariant_under_each_placement(tmp_path: Path, profile: str) -> None:
    result = subprocess.run(
        titan_cmd("chaos", "--duration", "25", "--rate", "15", "--kill-every", "1200", "--seed", "11",
                  "--profile", profile, "--json"),
        capture_output=True, text=True, timeout=400, cwd=tmp_path,
    )
    report = json.loads(result.stdout)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert result.returncode == 0 and not failed, json.dumps(failed, indent=1)
    assert {c["name"] for c in report["checks"]} >= {
        "every request answered", "no signal made two orders", "venue and journal agree",
        "positions equal the venue and the fills", "every fill once in JetStream, seq without gaps",
        "the halt was never violated", "every killed role recovered",
    }
    assert sum(v["kills"] for v in report["stats"]["recovery_ms"].values()) >= 10, "it really killed"
    kinds = report["stats"]["kills_by_kind"]
    assert kinds.get("actor", 0) >= 2 and kinds.get("worker", 0) >= 2, kinds
    assert report["stats"]["profile"] == profile
    assert report["stats"]["leftover_processes"] == 0


def test_chaos_refuses_an_unknown_role() -> None:
    result = subprocess.run(titan_cmd("chaos", "--roles", "gateway,janitor"), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "--roles: unknown janitor" in result.stderr
