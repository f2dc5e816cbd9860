"""Optional OpenTelemetry tracing: a request's span continues into the jobs it records and
their callbacks, through the W3C `traceparent` the ledger keeps with each.

Off unless IMAGEDROP_TRACING=1 and the `otel` extra is installed (pip install
'imagedrop[otel]'); the exporter then follows the SDK's usual OTEL_EXPORTER_OTLP_* settings.
Off, every span is a no-op and costs nothing. No global tracer provider is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class Tracing:
    """Spans for one process, from its own tracer provider (or none at all)."""

    def __init__(self, enabled: bool = False, *, provider: Any = None) -> None:
        self._provider: Any = None
        self._tracer: Any = None
        self._propagator: Any = None
        self._kinds: dict[str, Any] = {}
        if not enabled:
            return
        try:
            from opentelemetry.trace import SpanKind
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ModuleNotFoundError:
            log.warning("tracing_unavailable",
                        hint="IMAGEDROP_TRACING=1 needs: pip install 'imagedrop[otel]'")
            return
        self._provider = provider or _sdk_provider()
        if self._provider is None:
            return
        self._tracer = self._provider.get_tracer("imagedrop")
        self._propagator = TraceContextTextMapPropagator()
        self._kinds = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT,
                       "internal": SpanKind.INTERNAL, "consumer": SpanKind.CONSUMER}

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextlib.contextmanager
    def span(self, name: str, *, parent: str | None = None, kind: str = "internal",
             **attributes: str | int | float | bool | None) -> Iterator[str | None]:
        """A span around the block, continuing the trace of `parent` (a traceparent); yields
        the span's own traceparent to record with the work it starts (`parent` when off)."""
        if self._tracer is None:
            yield parent
            return
        context = self._propagator.extract({"traceparent": parent}) if parent else None
        with self._tracer.start_as_current_span(
                name, context=context, kind=self._kinds[kind],
                attributes={k: v for k, v in attributes.items() if v is not None}):
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            yield carrier.get("traceparent")

    def shutdown(self) -> None:
        """Flush what is buffered (the provider's exporters) at stop."""
        if self._provider is not None and hasattr(self._provider, "shutdown"):
            self._provider.shutdown()


def _sdk_provider() -> Any:
    """A tracer provider exporting by OTLP (the SDK reads its OTEL_* settings itself)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ModuleNotFoundError:
        log.warning("tracing_unavailable",
                    hint="IMAGEDROP_TRACING=1 needs: pip install 'imagedrop[otel]'")
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": "imagedrop"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
