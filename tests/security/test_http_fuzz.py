"""The HTTP API's OpenAPI document, generated from the models that validate
the requests, and a property-based fuzzer run from it against a live
engine: no 5xx, no answer that breaks the document (shared/spec/http-api.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.integration.test_http_api import base, call, operator, token
from tests.support.engine import FAST_SUPERVISION, RunningEngine
from titan_actors.domain.signals import ORDER
from titan_actors.wire.api import OPERATOR_MODELS, WEBHOOK, openapi


@contextmanager
def signing_proxy(target: str, secret: bytes) -> Iterator[str]:
    """An HTTP proxy in front of the engine that signs what goes to the
    webhook, as an alerting tool would: the fuzzer reaches past the HMAC."""

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            if self.path.startswith("/webhook"):
                headers.update({"x-signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),
                                "x-source": "titan_dashboard"})
            request = urllib.request.Request(target + self.path, data=body if body else None,
                                             method=self.command, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30) as reply:
                    status, answer, kept = reply.status, reply.read(), reply.headers
            except urllib.error.HTTPError as error:
                status, answer, kept = error.code, error.read(), error.headers
            self.send_response(status)
            for name in ("Content-Type", "Retry-After", "Allow"):
                if kept.get(name):
                    self.send_header(name, kept[name])
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer)

        def __getattr__(self, name: str) -> object:
            if name.startswith("do_"):  # any method the fuzzer tries goes on to the engine
                return self._forward
            raise AttributeError(name)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_document_is_built_from_the_validating_models() -> None:
    document = openapi(version="1")
    webhook = document["paths"]["/webhook"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert webhook == WEBHOOK.json_schema()
    assert set(ORDER.json_schema()["properties"]) <= set(webhook["properties"])
    assert webhook["properties"]["quantity"]["exclusiveMinimum"] == 0
    halt = document["paths"]["/api/halt"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert halt == OPERATOR_MODELS["halt"].json_schema() and halt["properties"]["mode"]["enum"] == [
        "HALTED", "REDUCING"]
    # What the model refuses, the document forbids, and the other way round.
    empty = {"mode": "HALTED", "reason": "", "operator": "o"}
    assert OPERATOR_MODELS["halt"].problem(empty) == "reason: missing"
    assert halt["properties"]["reason"]["minLength"] == 1


def test_a_fuzzer_driven_by_the_served_document_finds_no_5xx_and_no_answer_outside_it(tmp_path: Path) -> None:
    engine = RunningEngine(tmp_path, FAST_SUPERVISION).start()
    try:
        url = base(engine)
        status, document, _ = call(url + "/openapi.json")
        assert status == 200 and document["openapi"] == "3.1.0"
        assert document == openapi(version=document["info"]["version"])
        st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
        assert st is not None, "schemathesis is a test dependency"
        with signing_proxy(url, engine.secret) as proxy:
            for bearer in ("api", "operator"):
                run = subprocess.run(
                    [st, "run", url + "/openapi.json", "--url", proxy, "--checks",
                     "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance,response_headers_conformance",
                     "--max-examples", "60", "--phases", "examples,coverage,fuzzing", "--workers", "1",
                     "--seed", "1", "--no-shrink", "--request-timeout", "20", "--output-sanitize", "true",
                     "--exclude-path", "/api/positions/flatten",  # below, once: each would close positions
                     "-H", f"Authorization: Bearer {token(engine, bearer)}"],
                    capture_output=True, text=True, timeout=300, cwd=tmp_path)
                assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
                if bearer == "operator":  # the read token is refused by the operator endpoints, as it must be
                    assert "Authentication failed" not in run.stdout, run.stdout[-3000:]
        # The engine came through it: still answering, and what it refused it refused cleanly.
        assert call(url + "/health")[0] in (200, 503)
        status, reply, _ = operator(engine, "/api/resume", {"reason": "after the fuzz"})
        assert status == 200, reply
        assert operator(engine, "/api/positions/flatten", {"reason": "fuzz"})[0] == 200
        assert json.loads(json.dumps(engine.status()))["ready"] is not None
    finally:
        engine.stop()
