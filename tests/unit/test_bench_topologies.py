"""``herald bench --redis``: which targets a topology list makes, and the projection's arithmetic."""

from __future__ import annotations

import pytest

from benchmarks.run import _with_topologies
from benchmarks.spread import cost_per_publish, masters_needed
from benchmarks.targets import redis_of


def test_each_topology_beyond_standalone_is_a_herald_target_of_its_own() -> None:
    targets = _with_topologies(["herald", "raw"], ["standalone", "sentinel", "cluster"])
    assert targets == ["herald", "herald-sentinel", "herald-cluster", "raw"]
    assert [redis_of(t) for t in targets] == ["standalone", "sentinel", "cluster", "standalone"]
    assert _with_topologies(["herald"], ["cluster"]) == ["herald-cluster"]
    assert _with_topologies(["raw", "broadcaster"], ["cluster"]) == ["raw", "broadcaster"]


@pytest.mark.parametrize(
    ("rate", "cost_us", "masters"),
    [
        (10_000, 20.0, 1),  # 0.2 s of CPU per second: one master, well inside 0.7
        (35_000, 20.0, 1),  # exactly 0.7 s
        (35_001, 20.0, 2),
        (100_000, 20.0, 3),  # 2.0 s / 0.7 s = 2.86 -> 3
        (500_000, 30.0, 22),  # 15 s / 0.7 s = 21.4 -> 22
    ],
)
def test_masters_needed_is_the_rate_times_the_cost_over_each_masters_budget(
    rate: int, cost_us: float, masters: int
) -> None:
    assert masters_needed(rate, cost_us) == masters


def test_the_cost_per_publish_weighs_masters_by_their_publishes() -> None:
    rows = [{"publishes": 3000, "cpu_s": 0.06}, {"publishes": 1000, "cpu_s": 0.02}, {"publishes": 0, "cpu_s": 0.01}]
    assert cost_per_publish({"redis_masters": rows}) == pytest.approx(0.09e6 / 4000)
    assert cost_per_publish({}) is None
