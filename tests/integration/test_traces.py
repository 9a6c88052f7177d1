"""One trace per signal across actors and workers (OpenTelemetry, OTLP over
HTTP to a receiver the test runs), under both placement profiles."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.engine import FAST_SUPERVISION, RunningEngine, wait_for


class OtlpReceiver:
    """POST /v1/traces (OTLP/HTTP, protobuf): every span received, by name."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    service = next((a.value.string_value for a in resource.resource.attributes
                                    if a.key == "service.name"), "")
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            receiver.spans.append({
                                "name": span.name, "trace": span.trace_id.hex(), "id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(), "service": service,
                                "attributes": {a.key: a.value for a in span.attributes}})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def named(self, name: str, signal_id: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["name"] == name
                and s["attributes"].get("titan.signal_id") and
                s["attributes"]["titan.signal_id"].string_value == signal_id]


@pytest.mark.parametrize("profile", ["packed", "isolated"])
def test_one_signal_is_one_trace_from_the_frame_to_the_fill(tmp_path: Path, profile: str) -> None:
    receiver = OtlpReceiver()
    engine = RunningEngine(tmp_path, FAST_SUPERVISION)
    engine.env.update({"TITAN_PLACEMENT": profile, "OTEL_TRACES_EXPORTER": "otlp",
                       "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                       "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": "titan-test",
                       "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        engine.start()
        with engine.client() as client:
            assert client.prepare("tr-1", "BTCUSDT", "buy", 0.1)["type"] == "PREPARED"
            assert client.confirm("tr-1")["type"] == "ACCEPTED"
        names = ("fastpath PREPARE", "risk check", "fastpath CONFIRM", "venue send", "position apply fill")
        wait_for(lambda: all(receiver.named(n, "tr-1") for n in names), 15, 0.1, "every span exported")
    finally:
        engine.stop()
        receiver.stop()
    prepare, risk, confirm, send, fill = (receiver.named(n, "tr-1")[0] for n in names)
    assert {s["trace"] for s in (prepare, risk, confirm, send, fill)} == {prepare["trace"]}, "one trace"
    assert prepare["parent"] == "", "the frame's arrival starts it"
    assert (risk["parent"], confirm["parent"], send["parent"], fill["parent"]) == (
        prepare["id"], prepare["id"], confirm["id"], send["id"])
    assert risk["attributes"]["titan.risk.verdict"].string_value == "approved"
    rules = [v.string_value for v in risk["attributes"]["titan.risk.rules"].array_value.values]
    assert rules and all(r.endswith(":pass") for r in rules)
    assert send["attributes"]["titan.client_order_id"].string_value.startswith("tt")
    assert {s["service"] for s in (prepare, risk, send, fill)} == {"titan-test"}
