"""OpenTelemetry tracing (issue 15, item 8): off by default and then nothing is wrapped; on, one event gives a
publish span, the Redis command under it, and a fan-out span on the receiving replica, tied by the offset."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api import tracing
from api.app import create_app
from api.settings import Settings


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider, spans
    RedisInstrumentor().uninstrument()
    provider.shutdown()


def test_tracing_is_off_by_default_and_wraps_nothing(
    client_factory: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert tracing.requested_exporters() == []
    assert tracing.from_environment() is None
    broker = client_factory().app.state.herald.broker  # type: ignore[attr-defined]
    assert type(broker).__name__ == "RedisBroker"  # not the traced wrapper
    assert broker.hub.deliver == broker.hub._deliver  # the plain fan-out function


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_the_standard_environment_turns_it_on(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: list[str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert tracing.requested_exporters() == expected


def by_name(spans: tuple[ReadableSpan, ...], name: str, offset: str | None = None) -> list[ReadableSpan]:
    """Spans called ``name`` (about the event at ``offset``, when given: join/leave fan out too)."""
    return [
        span
        for span in spans
        if span.name == name and (offset is None or (span.attributes or {}).get("messaging.message.id") == offset)
    ]


def test_one_event_gives_publish_redis_and_fan_out_spans(
    settings_factory: Callable[..., Settings], exporter: tuple[TracerProvider, InMemorySpanExporter], room: str
) -> None:
    provider, spans = exporter
    with TestClient(create_app(settings_factory(), tracing.Tracing(provider))) as client:
        with client.websocket_connect(f"/ws/chat/{room}?user=ada") as ws:
            assert ws.receive_json()["type"] == "welcome"
            offset = client.post(f"/api/chat/{room}/messages", json={"text": "traced"}).json()["id"]
            assert ws.receive_json()["id"] == offset
    channel = f"chat:{room}"
    finished = spans.get_finished_spans()

    (publish,) = by_name(finished, f"publish {channel}")
    assert publish.kind is SpanKind.PRODUCER
    assert publish.attributes is not None and publish.attributes["messaging.message.id"] == offset
    redis_calls = [s for s in finished if s.kind is SpanKind.CLIENT and s.parent is not None]
    assert any(s.parent.span_id == publish.context.span_id and "EVALSHA" in s.name for s in redis_calls)  # type: ignore[union-attr]

    (fan_out,) = by_name(finished, f"fan-out {channel}", offset)
    assert fan_out.kind is SpanKind.CONSUMER
    assert fan_out.start_time is not None and publish.start_time is not None
    assert fan_out.start_time >= publish.start_time


def test_books_are_traced_too(
    settings_factory: Callable[..., Settings], exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, spans = exporter
    with TestClient(create_app(settings_factory(), tracing.Tracing(provider))) as client:
        book = client.post("/api/books", json={"isbn": "9780441013593", "title": "Dune", "author": "Frank Herbert"})
    (publish,) = by_name(spans.get_finished_spans(), "publish books", book.json()["offset"])
    assert publish.kind is SpanKind.PRODUCER
