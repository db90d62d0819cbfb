"""The Redis Cluster and Sentinel compose variants, checked without a Docker engine.

Read as data (with Compose's ``!override``/``!reset`` tags), and validated by ``docker compose config``
when a Compose v2 binary is on this machine. tests/integration/test_compose_redis_configs.py hands
each node's and sentinel's configuration to a real ``redis-server``.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from broker import parse_redis_url
from broker.urls import ClusterUrl, SentinelUrl
from tests.helpers.compose import CLUSTER, ROOT, SENTINEL, load, script


def compose_binary() -> list[str] | None:
    """A Compose v2 command (``docker compose`` or a ``docker-compose`` that is v2), if any."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        out = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and re.search(r"v?2\.\d+", out.stdout):
            return command
    return None


@pytest.mark.parametrize("path", [CLUSTER, SENTINEL], ids=["cluster", "sentinel"])
def test_docker_compose_accepts_the_variant(path: Path) -> None:
    command = compose_binary()
    if command is None:
        pytest.skip("no Compose v2 binary (docker compose / docker-compose v2) on this machine")
    out = subprocess.run([*command, "-f", str(path), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("path", [CLUSTER, SENTINEL], ids=["cluster", "sentinel"])
def test_the_variant_runs_docker_compose_ymls_api_and_nginx(path: Path) -> None:
    compose = load(path)
    services = compose["services"]
    for name in ("api", "nginx"):
        assert services[name]["extends"] == {"file": "docker-compose.yml", "service": name}
    assert services["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"
    # Its own project and subnet: it can run beside the standalone one, and only its nginx is trusted.
    assert compose["name"] not in ("", "herald")
    (subnet,) = [pool["subnet"] for pool in compose["networks"]["default"]["ipam"]["config"]]
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert subnet != base["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert services["api"]["environment"]["HERALD_TRUSTED_PROXIES"] == subnet
    # Replaced, not merged: docker-compose.yml's api waits for a `redis` service this file does not have.
    assert "redis" not in services["api"]["depends_on"]
    assert "depends_on: !override" in path.read_text()


def test_cluster_has_six_nodes_on_redis_7_announcing_hostnames() -> None:
    services = load(CLUSTER)["services"]
    nodes = {name: s for name, s in services.items() if re.fullmatch(r"redis-\d", name)}
    assert len(nodes) == 6
    volumes = set()
    for name, node in nodes.items():
        assert node["image"].startswith("redis:7")
        assert node["hostname"] == name  # what "$(hostname)" announces
        text = script(node)
        for flag in ("--cluster-enabled yes", '--cluster-announce-hostname "$(hostname)"'):
            assert flag in text, name
        assert "--cluster-preferred-endpoint-type hostname" in text
        assert "--cluster-config-file /data/" in text
        assert "redis-cli" in " ".join(node["healthcheck"]["test"])
        volumes.add(node["volumes"][0].split(":")[0])
    assert len(volumes) == 6  # nodes.conf per node: the cluster survives a restart


def test_cluster_init_job_creates_three_masters_with_a_replica_each() -> None:
    services = load(CLUSTER)["services"]
    init = services["redis-cluster-init"]
    nodes = sorted(name for name in services if re.fullmatch(r"redis-\d", name))
    assert {name: dep["condition"] for name, dep in init["depends_on"].items()} == dict.fromkeys(
        nodes, "service_healthy"
    )
    text = script(init)
    create = next(shlex.split(line) for line in text.splitlines() if "--cluster create" in line)
    assert create[:3] == ["redis-cli", "--cluster", "create"]
    assert [arg for arg in create if ":" in arg] == [f"{name}:6379" for name in nodes]
    assert create[create.index("--cluster-replicas") + 1] == "1"
    assert "--cluster-yes" in create  # no prompt in a container
    assert "cluster_state:ok" in text
    assert init["restart"] == "no"
    api = services["api"]
    assert api["depends_on"] == {"redis-cluster-init": {"condition": "service_completed_successfully"}}


def test_cluster_api_url_seeds_from_the_nodes() -> None:
    services = load(CLUSTER)["services"]
    topology = parse_redis_url(services["api"]["environment"]["HERALD_REDIS_URL"])
    assert isinstance(topology, ClusterUrl)
    assert topology.seeds and all(seed.host in services and seed.port == 6379 for seed in topology.seeds)


def test_sentinel_set_is_a_master_a_replica_and_three_sentinels_agreeing_on_it() -> None:
    services = load(SENTINEL)["services"]
    replica = services["redis-replica"]["command"].split()
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis-master", "6379"]
    sentinels = sorted(name for name in services if name.startswith("sentinel-"))
    assert len(sentinels) == 3
    monitors = {re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", script(services[s])).groups() for s in sentinels}  # type: ignore[union-attr]
    assert monitors == {("herald", "redis-master", "6379", "2")}  # one master, quorum 2 of 3

    topology = parse_redis_url(services["api"]["environment"]["HERALD_REDIS_URL"])
    assert isinstance(topology, SentinelUrl)
    assert topology.master == "herald"
    assert sorted(a.host for a in topology.sentinels) == sentinels
    assert {a.port for a in topology.sentinels} == {26379}
    assert set(services["api"]["depends_on"]) == {*sentinels, "redis-replica"}


@pytest.mark.parametrize("path", [CLUSTER, SENTINEL], ids=["cluster", "sentinel"])
def test_the_variants_settings_are_real_settings_with_their_defaults(path: Path) -> None:
    from api.settings import Settings

    fields = {"HERALD_" + name.upper(): info for name, info in Settings.model_fields.items()}
    for key, value in load(path)["services"]["api"]["environment"].items():
        assert key in fields, f"{path.name} sets {key}, which Settings does not read"
        match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
        if match is not None:
            assert (match.group(1), match.group(2)) == (key, str(fields[key].default))
