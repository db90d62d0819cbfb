"""Module-scoped real topologies: a test module shares one cluster / one sentinel set (start-up costs seconds).

Tests that break a topology call its ``heal()`` at the end (or rely on the
``healed_*`` fixtures), so the next test in the module finds it whole again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.topologies import ClusterTopology, SentinelTopology


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    topology = ClusterTopology(tmp_path_factory.mktemp("cluster")).start()
    yield topology
    topology.stop()


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    topology = SentinelTopology(tmp_path_factory.mktemp("sentinel")).start()
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
