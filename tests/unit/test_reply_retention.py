from __future__ import annotations

from pathlib import Path

import orjson

from titan_actors.actors.gateway import _KEEP_REPLIES_MS, IpcGateway, _now_ms
from titan_actors.runtime.store import Store


def test_replies_older_than_48_hours_are_pruned_through_the_time_index(tmp_path: Path) -> None:
    gateway = IpcGateway.__new__(IpcGateway)  # the store logic only: no actor system needed
    gateway.store = Store(str(tmp_path / "gateway"))
    try:
        now = _now_ms()
        for i, age in enumerate([_KEEP_REPLIES_MS + 60_000, _KEEP_REPLIES_MS + 5, 1_000]):
            key, stored_at = f"reply:CONFIRM:s{i}".encode(), now - age
            gateway.store.write_batch([(key, orjson.dumps({"type": "ACCEPTED", "stored_at": stored_at})),
                                       (b"ridx:%016d:" % stored_at + key, b"")])
        gateway._persist(("s3", "PREPARE"), {"type": "PREPARED", "req_id": "r", "ts": 1})
        gateway._prune_replies()
        kept = sorted(k for k, _ in gateway.store.items(b"reply:"))
        assert kept == [b"reply:CONFIRM:s2", b"reply:PREPARE:s3"]
        assert len(list(gateway.store.items(b"ridx:"))) == 2
        assert orjson.loads(gateway.store.get(b"reply:PREPARE:s3"))["type"] == "PREPARED"
    finally:
        gateway.store.close()
