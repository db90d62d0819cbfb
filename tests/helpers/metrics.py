"""``GET /metrics`` read back through the Prometheus text parser, exactly as a scraper sees it."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.servers import Herald

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(herald: Herald, timeout: float = 10.0) -> Samples:
    response = httpx.get(f"{herald.http}/metrics", timeout=timeout)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (a PromQL selector's sum)."""
    matching = [v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(have)]
    assert matching, f"{name}{labels} not in /metrics"
    return sum(matching)


def per_node(samples: Samples, name: str) -> dict[str, float]:
    """``{node: value}`` of a per-node sample (``herald_redis_pubsub_connections`` ...)."""
    return {dict(labels)["node"]: v for (sample, labels), v in samples.items() if sample == name}
