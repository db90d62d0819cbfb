"""Module-scoped real topologies: a test module shares one cluster / one sentinel set (start-up costs seconds).

Tests use the function-scoped ``cluster`` / ``sentinels`` fixtures, which heal the
topology after each test (restart what was killed, wait until healthy), so the
next test in the module finds it whole again. Without ``redis-server`` /
``redis-cli`` the tests skip (fail with HERALD_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.helpers.topologies import ClusterTopology, SentinelTopology

T = TypeVar("T", ClusterTopology, SentinelTopology)


def start_topology(make: Callable[[], T]) -> T:
    """Start a topology; once more on fresh ports if the first try fails (a port taken between the
    free-port check and the start, or a start slower than the bound on a loaded machine)."""
    try:
        return make().start()
    except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
        logging.getLogger(__name__).warning("topology start failed (%s); trying once more", exc)
        return make().start()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    topology = start_topology(lambda: ClusterTopology(tmp_path_factory.mktemp("cluster")))
    yield topology
    topology.stop()


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    topology = start_topology(lambda: SentinelTopology(tmp_path_factory.mktemp("sentinel")))
    yield topology
    topology.stop()


@pytest.fixture
def cluster(redis_cluster: ClusterTopology) -> Iterator[ClusterTopology]:
    """The module's cluster, healed after a test that broke it."""
    yield redis_cluster
    redis_cluster.heal()


@pytest.fixture
def sentinels(sentinel_set: SentinelTopology) -> Iterator[SentinelTopology]:
    """The module's sentinel set, healed after a test that broke it."""
    yield sentinel_set
    sentinel_set.heal()
