"""Prometheus metrics. Hot-path counts are plain ints read at scrape time (a
prometheus ``Counter.inc`` takes a lock: too dear per message per subscriber)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broker import BrokerStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: ``herald_connections`` / ``herald_sse_streams`` labels: every one is exposed from start-up
ENDPOINTS = ("chat", "graphql")


@dataclass
class Counts:
    published: int = 0
    delivered: int = 0
    slow_consumers: int = 0
    rate_limited: int = 0
    graphql_executions: int = 0


@dataclass
class Sources:
    """Live readings owned by other components, sampled at scrape time."""

    #: open connections of (endpoint, transport)
    connections: Callable[[str, str], int]
    broker: Callable[[], BrokerStats]
    graphql_subscriptions: Callable[[], int]
    graphql_shared_streams: Callable[[], int]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.counts = Counts()
        self.sources: Sources | None = None
        self.publish_seconds = Histogram(
            "herald_publish_seconds",
            "Time to publish one event to Redis (one round trip)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.registry.register(_Collector(self))

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """Time one publish and count it once it succeeded."""
        started = time.perf_counter()
        yield
        self.published(started)

    def published(self, started: float) -> None:
        """A publish started at ``started`` (``time.perf_counter()``) succeeded: ``publishing()``'s end, and the
        whole of it for a publish that completes through a callback."""
        self.publish_seconds.observe(time.perf_counter() - started)
        self.counts.published += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        counts, sources = self._metrics.counts, self._metrics.sources
        if sources is None:
            return
        # SPEC §6 fixes herald_connections' label set to {endpoint}: it counts both transports, and the
        # SSE share has a gauge of its own rather than a second label scrapers of the spec would not expect.
        connections = GaugeMetricFamily("herald_connections", "Open WebSockets and SSE streams", labels=["endpoint"])
        streams = GaugeMetricFamily(
            "herald_sse_streams", "Open SSE streams (in herald_connections too)", labels=["endpoint"]
        )
        for endpoint in ENDPOINTS:
            sse = sources.connections(endpoint, "sse")
            connections.add_metric([endpoint], sources.connections(endpoint, "websocket") + sse)
            streams.add_metric([endpoint], sse)
        yield connections
        yield streams
        redis = sources.broker()
        for name, doc, value in (
            ("herald_messages_published", "Events published by this replica", counts.published),
            ("herald_messages_delivered", "Frames handed to local clients", counts.delivered),
            ("herald_slow_consumers", "Clients closed 1013 for a full send queue", counts.slow_consumers),
            ("herald_rate_limited", "Chat frames refused by the rate limit", counts.rate_limited),
            ("herald_redis_reconnects", "Pub/sub reconnections to Redis", redis.reconnects),
            ("herald_redis_topology_changes", "Redis failovers and slot moves followed", redis.topology_changes),
            ("herald_graphql_executions", "Subscription events executed", counts.graphql_executions),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        for name, doc, value in (
            ("herald_channels", "Channels this replica is subscribed to", redis.channels),
            ("herald_redis_nodes", "Redis masters this replica knows", redis.nodes),
            ("herald_graphql_subscriptions", "Active GraphQL subscription operations", sources.graphql_subscriptions()),
            ("herald_graphql_shared_streams", "Distinct executions serving them", sources.graphql_shared_streams()),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        yield from _per_node(redis)


def _per_node(redis: BrokerStats) -> Iterator[Metric]:
    """One sample per Redis node the replica listens on: where its pub/sub connections and channels are."""
    connections = GaugeMetricFamily(
        "herald_redis_pubsub_connections", "Pub/sub connections to each Redis node", labels=["node"]
    )
    channels = GaugeMetricFamily(
        "herald_redis_pubsub_channels", "Channels subscribed on each Redis node", labels=["node"]
    )
    for link in redis.links:
        connections.add_metric([link.node], link.connections)
        channels.add_metric([link.node], link.channels)
    yield connections
    yield channels
