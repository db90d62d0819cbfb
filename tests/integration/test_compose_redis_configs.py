"""The compose variants' Redis configurations, as a real ``redis-server`` reads them: a cluster node's
command line and a sentinel's config file, with the container hostnames swapped for loopback."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import redis

from tests.helpers.compose import CLUSTER, SENTINEL, load, script
from tests.helpers.servers import RedisServer
from tests.helpers.topologies import free_cluster_port, wait_for

pytestmark = pytest.mark.redis


def test_redis_server_accepts_the_cluster_node_command(tmp_path: Path) -> None:
    text = script(load(CLUSTER)["services"]["redis-1"])
    args = shlex.split(text.replace('"$(hostname)"', "localhost"))
    assert args[:2] == ["exec", "redis-server"]
    args = [a.replace("/data/", f"{tmp_path}/") for a in args[2:]]
    server = RedisServer(tmp_path, free_cluster_port(), extra_args=args).start()
    try:
        # Refused ("cluster support disabled") unless the node runs in cluster mode.
        assert server.client().execute_command("CLUSTER INFO")["cluster_known_nodes"] == "1"
        assert server.client().config_get("cluster-announce-hostname") == {"cluster-announce-hostname": "localhost"}
        assert server.client().config_get("cluster-preferred-endpoint-type")["cluster-preferred-endpoint-type"] == (
            "hostname"
        )
    finally:
        server.stop()


def test_redis_server_accepts_the_sentinel_configuration(tmp_path: Path) -> None:
    master = RedisServer(tmp_path / "master").start()
    text = script(load(SENTINEL)["services"]["sentinel-1"])
    conf = re.search(r"<<EOF\n(.*?)\nEOF", text, re.S)
    assert conf is not None
    config = tmp_path / "sentinel" / "sentinel.conf"
    config.parent.mkdir()
    config.write_text(conf.group(1).replace("redis-master 6379", f"localhost {master.port}") + "\n")
    sentinel = RedisServer(config.parent, config=config, extra_args=["--sentinel"])
    try:
        sentinel.start()
        state = redis.Redis(port=sentinel.port, decode_responses=True).sentinel_master("herald")
        assert (state["port"], state["quorum"]) == (master.port, 2)
    finally:
        sentinel.stop()
        master.stop()


def test_the_init_job_makes_a_cluster_of_the_six_nodes_once_and_clients_see_hostnames(tmp_path: Path) -> None:
    """The nodes' command line and the init job's script, run as compose would, with ``redis-N`` -> loopback."""
    services = load(CLUSTER)["services"]
    ports = {f"redis-{i}": free_cluster_port() for i in range(1, 7)}
    nodes = []
    try:
        for name, port in ports.items():
            args = shlex.split(script(services[name]).replace('"$(hostname)"', "localhost"))[2:]
            args = [a.replace("/data/", f"{tmp_path}/{name}-") for a in args]
            nodes.append(RedisServer(tmp_path / name, port, extra_args=args).start())
        init = script(services["redis-cluster-init"])
        for name, port in ports.items():
            init = init.replace(f"{name}:6379", f"127.0.0.1:{port}").replace(f"-h {name} ", f"-p {port} ")
        for _ in range(2):  # the second run finds the cluster made and changes nothing
            run = subprocess.run(["sh", "-c", init], capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        client = redis.Redis(port=ports["redis-1"], decode_responses=True)
        slots = client.execute_command("CLUSTER SLOTS")
        masters = {(lo, hi): endpoint for lo, hi, (endpoint, *_), *_ in slots}
        assert sorted(masters) == [(0, 5460), (5461, 10922), (10923, 16383)]
        assert set(masters.values()) == {"localhost"}  # the announced hostname, not an IP

        def roles() -> list[str]:
            flags = [node["flags"] for node in client.execute_command("CLUSTER NODES").values()]
            return sorted("master" if "master" in f else "replica" if "slave" in f else f for f in flags)

        wait_for(lambda: roles() == ["master"] * 3 + ["replica"] * 3, 30, "3 masters, a replica each")
    finally:
        for node in nodes:
            node.stop()
