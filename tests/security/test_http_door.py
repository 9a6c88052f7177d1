"""The HTTP door: loopback by default, only the spec's open GETs, and no
secret in anything it answers."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.test_http import _get, _url
from tests.support.engine import FAST_SUPERVISION, RunningEngine
from titan_actors.config import load_config
from titan_actors.secret import read_nats_auth


def test_the_listener_binds_loopback_unless_told_otherwise() -> None:
    assert load_config(None, {})["http.listen"] == "127.0.0.1:8470"


def test_nothing_but_the_open_gets_is_served_and_no_answer_carries_a_secret(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        url = _url(engine)
        assert url.startswith("http://127.0.0.1:")
        secrets = [engine.secret, engine.operator_secret,
                   *(v.encode() for v in read_nats_auth(engine.data_dir).values() if len(v) >= 16)]
        for path in ("/health", "/metrics"):
            status, body, _kind = _get(url + path)
            assert status in (200, 503)
            assert not [s for s in secrets if s in body], path
        for method, path in (("POST", "/health"), ("DELETE", "/metrics"), ("GET", "/webhook"),
                             ("GET", "/../engine.json")):
            body = b"{}" if method == "POST" else None
            request = urllib.request.Request(url + path, method=method, data=body)
            try:
                urllib.request.urlopen(request, timeout=5)
                raise AssertionError(f"{method} {path} was served")
            except urllib.error.HTTPError as error:
                assert error.code in (404, 405), (method, path, error.code)
        assert engine.actor("risk")["detail"]["states"] == {}, "nothing changed"
    finally:
        engine.stop()
