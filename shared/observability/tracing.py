"""OpenTelemetry traces: FastAPI, SQLAlchemy and HTTPX spans, exported over OTLP when the
standard `OTEL_*` variables ask for it (off by default), and continued across Kafka through
the `traceparent` every event carries."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine

_PROPAGATOR = TraceContextTextMapPropagator()
TRACER = trace.get_tracer("kemdr")
# Probes and scrapes would drown the traces that matter.
EXCLUDED_URLS = "healthz,readyz,metrics"


def enabled() -> bool:
    """Whether the environment asks for an OTLP trace exporter (the standard variables)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() in ("none", ""):
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


_installed = False


def install_tracing(app: FastAPI, service: str, engines: Sequence[Engine]) -> bool:
    """Instrument the app, its engines and outgoing HTTPX calls; False when tracing is off."""
    global _installed
    if not enabled():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if not _installed:
        # One provider per process (OTEL_SERVICE_NAME, when set, wins over ours).
        name = os.environ.get("OTEL_SERVICE_NAME") or service
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        HTTPXClientInstrumentor().instrument()
        # One app per process in production: its engines are the ones to trace. The
        # instrumentation declares SQLAlchemy < 2.1 yet only uses the engine event API, which
        # 2.1 keeps.
        SQLAlchemyInstrumentor().instrument(engines=list(engines), skip_dep_check=True)
        _installed = True
    FastAPIInstrumentor.instrument_app(app, excluded_urls=EXCLUDED_URLS)
    return True


def shutdown_tracing() -> None:
    """Send the spans still buffered (a stopping process)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if callable(shutdown):
        shutdown()


def active_traceparent() -> str | None:
    """The W3C traceparent of the span in progress (None: no valid span)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def consuming(topic: str, traceparent: str | None, **attributes: Any) -> Iterator[None]:
    """A consumer span for one event, child of the writer's span named by `traceparent`."""
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with TRACER.start_as_current_span(
            f"apply {topic}",
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic}
            | attributes,
        ):
            yield
    finally:
        if token is not None:
            otel_context.detach(token)
