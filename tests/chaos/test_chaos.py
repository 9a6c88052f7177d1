"""The seeded, bounded chaos run (the long one is `titan chaos`, see README)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.engine import titan_cmd


def test_a_seeded_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    result = subprocess.run(
        titan_cmd("chaos", "--duration", "25", "--rate", "15", "--kill-every", "1200", "--seed", "11",
                  "--json"),
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
    assert report["stats"]["leftover_processes"] == 0


def test_chaos_refuses_an_unknown_role() -> None:
    result = subprocess.run(titan_cmd("chaos", "--roles", "gateway,janitor"), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "--roles: unknown janitor" in result.stderr
