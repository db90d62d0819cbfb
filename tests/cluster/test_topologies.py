"""The test topologies themselves: a cluster and a sentinel set that really fail over and migrate."""

from __future__ import annotations

import pytest

from tests.helpers.topologies import ClusterTopology, SentinelTopology

pytestmark = pytest.mark.redis


def test_cluster_has_three_masters_and_moves_a_slot(cluster: ClusterTopology) -> None:
    masters = cluster.masters()
    assert len(masters) == 3
    client = cluster.client(cluster.master_of("{k}x"))
    client.set("{k}x", "1")
    target = next(p for p in masters if p != cluster.master_of("{k}x"))
    cluster.migrate_slot_of("{k}x", target)
    assert cluster.master_of("{k}x") == target
    assert cluster.client(target).get("{k}x") == b"1"


def test_cluster_fails_over_a_killed_master(cluster: ClusterTopology, request: pytest.FixtureRequest) -> None:
    victim = cluster.masters()[0]
    cluster.kill(victim)
    took = cluster.wait_failover(victim)
    request.node.user_properties.append(("cluster_failover_s", round(took, 2)))
    assert victim not in cluster.masters() and len(cluster.masters()) == 3


def test_sentinel_fails_over_a_killed_master(sentinels: SentinelTopology, request: pytest.FixtureRequest) -> None:
    victim = sentinels.master_port()
    sentinels.kill(victim)
    took = sentinels.wait_failover(victim)
    request.node.user_properties.append(("sentinel_failover_s", round(took, 2)))
    assert sentinels.master_port() != victim
