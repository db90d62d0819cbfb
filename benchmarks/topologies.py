"""Local Redis topologies started from the ``redis-server`` binary on loopback ports.

* ``standalone``: one server.
* ``sentinel``: one master, one replica, three sentinels watching them as :data:`SENTINEL_MASTER`.
* ``cluster``: three masters with one replica each, made by ``redis-cli --cluster create``.

``herald bench --redis`` starts them in its :class:`~benchmarks.procs.ProcessGroup` (stopped by PID with
the rest); the test fixtures (``tests/helpers/topologies.py``) build theirs from the same node settings
and add faults. Standard library and redis-py only.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from benchmarks.procs import ProcessGroup, free_port, wait_port

TOPOLOGIES = ("standalone", "sentinel", "cluster")
SENTINEL_MASTER = "herald"
#: cluster-node-timeout and sentinel down-after: fail over in a few seconds (tests kill nodes)
NODE_TIMEOUT_MS = 1000
WAIT_S = 60.0


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll_s: float = 0.05) -> float:
    """Poll ``condition`` until true; the seconds it took. Redis errors count as "not yet"."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if condition():
                return time.monotonic() - start
        except (redis.RedisError, OSError):
            pass
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout} s")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A port whose cluster bus port (+10000) is free too, both below the kernel's ephemeral range (Linux's
    default starts at 32768): a port taken by an outgoing connection between this check and the node's start
    made redis-server exit (a bus port of 30000-39999 could be, on a machine busy with connections)."""
    for _ in range(200):
        port = random.randint(10000, 22000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def cluster_node_args(port: int, node_timeout_ms: int = NODE_TIMEOUT_MS) -> list[str]:
    """redis-server arguments of one cluster node (after ``--port``), tuned to fail over fast and alone."""
    return [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        f"nodes-{port}.conf",
        "--cluster-node-timeout",
        str(node_timeout_ms),
        # Slots of a failing master must not take the healthy masters down with them.
        "--cluster-require-full-coverage",
        "no",
        # A replica left without a master elsewhere must not wander off.
        "--cluster-allow-replica-migration",
        "no",
        # Replicas sync at once (the default waits 5 s), and any replica may be promoted.
        "--repl-diskless-sync-delay",
        "0",
        "--cluster-replica-validity-factor",
        "0",
    ]


def cluster_create_argv(redis_cli: str, ports: list[int], replicas: int) -> list[str]:
    return [
        redis_cli,
        "--cluster",
        "create",
        *(f"127.0.0.1:{port}" for port in ports),
        "--cluster-replicas",
        str(replicas),
        "--cluster-yes",
    ]


def sentinel_config(master_port: int, down_after_ms: int = NODE_TIMEOUT_MS) -> str:
    # failover-timeout also spaces failovers of one master (2x it): 1 s lets a test module fail the
    # same set over several times without waiting.
    return (
        f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 2\n"
        f"sentinel down-after-milliseconds {SENTINEL_MASTER} {down_after_ms}\n"
        f"sentinel failover-timeout {SENTINEL_MASTER} 1000\n"
        f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
    )


def client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)


def command(conn: redis.Redis, *args: Any) -> Any:
    """One command by name (redis-py leaves ``execute_command`` untyped)."""
    return conn.execute_command(*args)  # type: ignore[no-untyped-call]


def slot_masters(port: int) -> list[int]:
    """Ports of the masters that own slots, as the node on ``port`` sees them (CLUSTER SLOTS)."""
    return sorted({int(nodes[1]) for _lo, _hi, nodes, *_ in command(client(port), "CLUSTER SLOTS")})


@dataclass
class LocalTopology:
    kind: str
    #: what ``HERALD_REDIS_URL`` should say
    url: str
    #: ports of the data nodes that take writes (standalone: the one; sentinel: the master)
    masters: list[int]
    #: every redis-server holding data (masters and replicas), for CPU sampling
    data_pids: list[int] = field(default_factory=list)


def start_topology(kind: str, group: ProcessGroup) -> LocalTopology:
    if kind == "standalone":
        port, proc = _server(group, "redis", free_port())
        return LocalTopology(kind, f"redis://127.0.0.1:{port}", [port], [proc])
    if kind == "sentinel":
        return _sentinel(group)
    if kind == "cluster":
        return _cluster(group)
    raise ValueError(f"unknown Redis topology {kind!r}; choose from {', '.join(TOPOLOGIES)}")


def _server(group: ProcessGroup, name: str, port: int, *extra: str, config: Path | None = None) -> tuple[int, int]:
    workdir = group.logdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", *([str(config)] if config else []), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(workdir), *extra]
    proc = group.start(name, argv)
    wait_port(proc, port)
    return port, proc.pid


def _sentinel(group: ProcessGroup) -> LocalTopology:
    fast_sync = ("--repl-diskless-sync-delay", "0")
    master, master_pid = _server(group, "redis-master", free_port(), *fast_sync)
    replica, replica_pid = _server(
        group, "redis-replica", free_port(), *fast_sync, "--replicaof", "127.0.0.1", str(master)
    )
    wait_for(lambda: client(replica).info("replication")["master_link_status"] == "up", WAIT_S, "replica in sync")
    sentinels = []
    for i in range(3):
        config = group.logdir / f"redis-sentinel-{i}.conf"
        config.write_text(sentinel_config(master))
        port, _ = _server(group, f"redis-sentinel-{i}", free_port(), "--sentinel", config=config)
        sentinels.append(port)

    def agreed() -> bool:
        states: list[Any] = [client(port).sentinel_master(SENTINEL_MASTER) for port in sentinels]
        return all(s["num-slaves"] >= 1 and s["num-other-sentinels"] >= 2 for s in states)

    wait_for(agreed, WAIT_S, "sentinels agree")
    hosts = ",".join(f"127.0.0.1:{port}" for port in sentinels)
    return LocalTopology("sentinel", f"redis+sentinel://{hosts}/{SENTINEL_MASTER}", [master], [master_pid, replica_pid])


def _cluster(group: ProcessGroup, masters: int = 3, replicas: int = 1) -> LocalTopology:
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        raise RuntimeError("redis-cli is not on the PATH (apt-get install redis-tools)")
    ports, pids = [], []
    for _ in range(masters * (1 + replicas)):
        port = free_cluster_port()
        _, pid = _server(group, f"redis-node-{port}", port, *cluster_node_args(port))
        ports.append(port)
        pids.append(pid)
    subprocess.run(cluster_create_argv(redis_cli, ports, replicas), check=True, capture_output=True, timeout=WAIT_S)

    def healthy() -> bool:
        ok = all(command(client(p), "CLUSTER INFO")["cluster_state"] == "ok" for p in ports)
        synced = [client(p).info("replication") for p in ports]
        up = [i for i in synced if i["role"] == "slave" and i["master_link_status"] == "up"]
        return ok and len(up) == masters * replicas

    wait_for(healthy, WAIT_S, "cluster healthy, replicas in sync")
    seeds = ",".join(f"127.0.0.1:{port}" for port in ports[:3])
    return LocalTopology("cluster", f"redis+cluster://{seeds}", slot_masters(ports[0]), pids)
