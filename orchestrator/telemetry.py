"""OpenTelemetry for the orchestrator: providers built from settings, no global state.

The composition root builds one `Telemetry` and hands its providers to everything that
traces: the command worker (``traceparent`` travels in the command's headers and the
handler's span continues it), the HTTP app, httpx (provider calls, the Stripe SDK
included), asyncpg, the command handler, the create flow, the event store and the
projector. Spans carry
low-cardinality names; ids go into attributes. Personal data (emails, names, addresses)
and secrets never become attributes.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, spans and metrics are exported over OTLP/HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Meter, MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import Span, SpanContext, TracerProvider

__all__ = [
    "Metrics",
    "Telemetry",
    "build_telemetry",
    "continuing",
    "current_traceparent",
    "instrumented",
    "link_to",
    "span_context_of",
    "traceparent_of",
]


@dataclass(frozen=True, slots=True)
class Metrics:
    """The orchestrator's own instruments."""

    commands: Counter
    provider_calls: Counter
    append_conflicts: Counter

    @classmethod
    def on(cls, meter: Meter) -> Metrics:
        return cls(
            commands=meter.create_counter(
                "checkout.commands", description="commands handled, by type and outcome"
            ),
            provider_calls=meter.create_counter(
                "checkout.provider.calls", description="provider calls, by provider and outcome"
            ),
            append_conflicts=meter.create_counter(
                "checkout.append.conflicts", description="optimistic-concurrency conflicts"
            ),
        )


@dataclass(frozen=True, slots=True)
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    metrics: Metrics
    exporting: bool = False
    """whether spans or metrics go anywhere; per-message instrumentation is skipped if not"""
    _owned: list[SdkTracerProvider | SdkMeterProvider] = field(default_factory=list, repr=False)

    def tracer(self, name: str) -> trace.Tracer:
        return self.tracer_provider.get_tracer(name)

    @classmethod
    def disabled(cls) -> Telemetry:
        """No-op providers: what a component uses when nobody gave it telemetry."""
        meter_provider = NoOpMeterProvider()
        return cls(
            trace.NoOpTracerProvider(),
            meter_provider,
            Metrics.on(meter_provider.get_meter("orchestrator")),
        )

    def shutdown(self) -> None:
        for provider in self._owned:
            provider.shutdown()


def build_telemetry(
    *,
    service_name: str = "checkout-orchestrator",
    otlp_endpoint: str | None = None,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """``span_exporters`` / ``metric_readers`` are for tests (in-memory) and tools."""
    resource = Resource.create({"service.name": service_name})
    # With nowhere to send spans, none is recorded (ids are still made, so traceparent
    # still links events, logs and a caller's trace); recording costs ~10% of a command.
    exporting = bool(span_exporters) or otlp_endpoint is not None
    tracer_provider = SdkTracerProvider(
        resource=resource, sampler=ParentBased(ALWAYS_ON) if exporting else ALWAYS_OFF
    )
    for exporter in span_exporters:
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    readers = list(metric_readers)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        base = otlp_endpoint.rstrip("/")
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"))
        )
        readers.append(
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))
        )
    meter_provider = SdkMeterProvider(resource=resource, metric_readers=readers)
    metrics = Metrics.on(meter_provider.get_meter("orchestrator"))
    return Telemetry(
        tracer_provider,
        meter_provider,
        metrics,
        exporting or bool(readers),
        [tracer_provider, meter_provider],
    )


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to store with the events it causes."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span`` (current or not)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def span_context_of(traceparent: str | None) -> SpanContext | None:
    if not traceparent:
        return None
    context = propagate.extract({"traceparent": traceparent})
    span_context = trace.get_current_span(context).get_span_context()
    return span_context if span_context.is_valid else None


def continuing(traceparent: str | None) -> Context | None:
    """The context to start a span in: the current one when a span is active (the NATS
    middleware continued the caller's trace), else the caller's ``traceparent`` (the
    middleware is left out when nothing is exported), else a new trace."""
    if trace.get_current_span().get_span_context().is_valid or not traceparent:
        return None
    return propagate.extract({"traceparent": traceparent})


def link_to(span: Span, traceparent: str | None, **attributes: str) -> None:
    """Link ``span`` to the trace of a stored event (e.g. a webhook to its session)."""
    span_context = span_context_of(traceparent)
    if span_context is not None and span.is_recording():
        span.add_link(span_context, attributes or None)


@contextmanager
def instrumented(telemetry: Telemetry) -> Iterator[None]:
    """httpx (provider calls, the Stripe SDK) and asyncpg traced for the block's lifetime.

    Both instrumentations patch their library process-wide, so only the composition
    root enters this, once, and undoes it on the way out.
    """
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor  # noqa: PLC0415

    instrumentors = (HTTPXClientInstrumentor(), AsyncPGInstrumentor())  # type: ignore[no-untyped-call]
    for instrumentor in instrumentors:
        instrumentor.instrument(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )
    try:
        yield
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
