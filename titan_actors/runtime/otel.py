"""Traces (OpenTelemetry): one trace per signal, across actors and workers.

Off unless `OTEL_TRACES_EXPORTER` names an exporter (`otlp` or `console`);
then configured by the standard variables the SDK reads:
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
`OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`; `grpc` only where the gRPC
exporter is installed), `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_SERVICE_NAME`,
`OTEL_BSP_*`. Each worker process makes its own tracer provider the first
time one of its actors starts a span (after the fork: the exporter's thread
belongs to that process); supervisors never trace, so the processes that
fork run no exporter thread.

A span's context crosses actors as a W3C `traceparent` string carried in the
message (`CheckOrder.trace`, `SubmitOrder.trace`, `ExecutionReport.trace`),
so it survives lanes, thespian and the deliveries' store alike.

Failure: an exporter that cannot reach its endpoint drops spans (the SDK
logs it); tracing never blocks or fails an order. An unknown exporter or
protocol is logged once and tracing stays off in that process.
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["enabled", "end", "start", "traceparent"]

log = logging.getLogger(__name__)

_EXPORTER = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
_ON = _EXPORTER not in ("", "none")
_state: dict[str, Any] = {"pid": 0, "tracer": None}


def enabled() -> bool:
    return _ON


def _tracer() -> Any:
    """This process's tracer, made on first use (None if tracing is off or broken)."""
    if _state["pid"] == os.getpid():
        return _state["tracer"]
    _state["pid"], _state["tracer"] = os.getpid(), None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        if _EXPORTER == "console":
            exporter: Any = ConsoleSpanExporter()
        elif _EXPORTER == "otlp":
            protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                                      os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            elif protocol in ("http/protobuf", "http"):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            else:
                raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported")
            exporter = OTLPSpanExporter()
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER={_EXPORTER!r} is not supported (otlp, console, none)")
        provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get(
            "OTEL_SERVICE_NAME", "titan-execution")}))  # the sampler comes from OTEL_TRACES_SAMPLER
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _state["provider"] = provider
        _state["tracer"] = provider.get_tracer("titan_actors")
    except Exception as exc:  # never fail an order over tracing
        log.error("tracing is off in this process: %s", exc)
    return _state["tracer"]


def start(name: str, parent: str = "", *, root: bool = False, kind: str = "internal",
          **attributes: Any) -> Any:
    """A started span, child of the `traceparent` string `parent` — or the
    root of a new trace with `root` — or None: tracing is off, there is no
    parent and this is not a root, or the parent was not sampled (then its
    whole trace costs nothing past the root's sampling decision)."""
    if not _ON or (not parent and not root) or parent.endswith("-00"):
        return None
    tracer = _tracer()
    if tracer is None:
        return None
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract({"traceparent": parent}) if parent else None
    return tracer.start_span(name, context=context, kind=getattr(SpanKind, kind.upper()),
                             attributes={k.replace("__", "."): v for k, v in attributes.items()
                                         if v is not None and v != ""})


def traceparent(span: Any) -> str:
    """The W3C `traceparent` of `span` ("" for None)."""
    if span is None:
        return ""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def end(span: Any, **attributes: Any) -> None:
    """Set `attributes` (dots as `__`) and end `span` (no-op for None)."""
    if span is None:
        return
    for key, value in attributes.items():
        if value is not None and value != "":
            span.set_attribute(key.replace("__", "."), value)
    span.end()


def flush() -> None:
    """Export what this process still holds (a worker about to end)."""
    provider = _state.get("provider")
    if provider is not None and _state["pid"] == os.getpid():
        provider.force_flush(2000)
