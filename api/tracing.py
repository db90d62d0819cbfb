"""OpenTelemetry tracing: an optional extra (``pip install 'herald[otel]'``), off unless asked for.

On when the standard ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``, or both comma-separated;
``OTEL_SDK_DISABLED=true`` wins). The OTLP exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables, the
resource ``OTEL_SERVICE_NAME`` (default ``herald``) and ``OTEL_RESOURCE_ATTRIBUTES``. Spans, per event:

- ``publish {channel}`` (PRODUCER), on the replica that publishes: the whole publish, Redis round trip included;
- the Redis command under it (CLIENT, from opentelemetry-instrumentation-redis: ``EVALSHA``, or the pipeline
  that carried several publishes waiting at the same moment, as a child of the first of them);
- ``fan-out {channel}`` (CONSUMER), on every replica with local subscribers: the synchronous hand-off to them
  (``BrokerOptions.fan_out`` wraps the hub's delivery once, at start).

The trace context does not travel through Redis: it would have to be stored with every event and every client
would receive it. A fan-out span therefore starts its own trace and carries the event's offset as
``messaging.message.id``, as the publish span does, to find one from the other.

Off, nothing is wrapped: the publish and fan-out paths are the plain ones, with no per-event check.
"""

from __future__ import annotations

import asyncio
import logging
import os
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from broker import BOOKS_CHANNEL, Broker, Event, Published, PublishThen

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("herald")

EXPORTERS = ("otlp", "console")


def requested_exporters() -> list[str]:
    """The exporters the standard environment asks for; empty means tracing is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    return [n for n in names if n != "none"]


def from_environment() -> Tracing | None:
    """Tracing as the environment asks for it, or None (the default: nothing is wrapped)."""
    exporters = requested_exporters()
    if not exporters:
        return None
    try:
        provider = _provider(exporters)
    except ImportError as exc:
        log.warning("OTEL_TRACES_EXPORTER is set but tracing needs pip install 'herald[otel]' (%s): tracing off", exc)
        return None
    log.info("OpenTelemetry tracing on (exporters: %s)", ", ".join(exporters))
    return Tracing(provider)


def _provider(exporters: list[str]) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "herald")})
    provider = TracerProvider(resource=resource)
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        elif name == "console":
            exporter = ConsoleSpanExporter()
        else:
            log.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored (Herald knows %s)", name, EXPORTERS)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class Tracing:
    """One replica's tracing: what wraps its broker's publishes and its fan-out, and the exporters to flush."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.trace import SpanKind

        self._provider = provider
        self._tracer = provider.get_tracer("herald")
        self._kinds = SpanKind
        redis = RedisInstrumentor()
        if not redis.is_instrumented_by_opentelemetry:  # process-wide: the first replica's provider
            redis.instrument(tracer_provider=provider)

    def broker(self, inner: Broker) -> Broker:
        """``inner`` with its publishes in spans; everything else is ``inner``'s own."""
        return cast(Broker, _TracedBroker(inner, self._tracer, self._kinds.PRODUCER))

    def fan_out(self, deliver: Callable[[Event], None]) -> Callable[[Event], None]:
        """For ``BrokerOptions.fan_out``: one span around each event's hand-off to this replica's sinks."""
        tracer, consumer = self._tracer, self._kinds.CONSUMER

        def traced(event: Event) -> None:
            # A plain function stays a plain function: no await enters the fan-out loop.
            attributes = {"messaging.system": "redis", "messaging.destination.name": event.channel}
            if event.offset is not None:
                attributes["messaging.message.id"] = event.offset
            with tracer.start_as_current_span(f"fan-out {event.channel}", kind=consumer, attributes=attributes):
                deliver(event)

        return traced

    def close(self) -> None:
        """Export what is buffered and stop."""
        self._provider.shutdown()


class _TracedBroker:
    """Delegates to the real broker; ``publish`` and ``add_book`` run in a PRODUCER span."""

    def __init__(self, inner: Broker, tracer: Any, kind: Any) -> None:
        self._inner = inner
        self._tracer = tracer
        self._kind = kind

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def publish(self, channel: str, data: str, *, key: str | None = None) -> Published:
        with self._span(channel) as span:
            published = await self._inner.publish(channel, data, key=key)
            span.set_attribute("messaging.message.id", published.offset)
            return published

    def publish_then(self, channel: str, data: str, then: PublishThen, *, key: str | None = None) -> None:
        task = asyncio.ensure_future(self.publish(channel, data, key=key))  # a task, so the span covers it
        task.add_done_callback(partial(_tell, then))

    async def add_book(self, isbn: str, data: str, *, key: str | None = None) -> Published:
        with self._span(BOOKS_CHANNEL) as span:
            published = await self._inner.add_book(isbn, data, key=key)
            span.set_attribute("messaging.message.id", published.offset)
            return published

    def _span(self, channel: str) -> Any:
        attributes = {"messaging.system": "redis", "messaging.destination.name": channel}
        return self._tracer.start_as_current_span(f"publish {channel}", kind=self._kind, attributes=attributes)


def _tell(then: PublishThen, task: asyncio.Future[Published]) -> None:
    if task.cancelled():
        then(None, asyncio.CancelledError())
    else:
        error = task.exception()
        then(None if error is not None else task.result(), error)
