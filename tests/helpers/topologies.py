"""Real Redis topologies for tests, started from the ``redis-server`` binary on loopback ports.

* :class:`ClusterTopology`: 3 masters + 3 replicas made by ``redis-cli --cluster create``.
* :class:`SentinelTopology`: 1 master + 1 replica + 3 sentinels.

Both are tuned to fail over in a few seconds (node timeout / down-after 1 s) and
offer the faults the tests need: kill -9, SIGSTOP/SIGCONT and restart a node by
PID, wait (bounded) for a failover, move a key's slot to another master. Every
process is stopped by its PID in :meth:`stop`. The node settings come from
``benchmarks.topologies``, where ``herald bench --redis`` starts the same topologies.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import redis
from redis.crc import key_slot

from benchmarks.topologies import (
    SENTINEL_MASTER,
    WAIT_S,
    cluster_create_argv,
    cluster_node_args,
    free_cluster_port,
    sentinel_config,
    wait_for,
)
from tests.helpers.servers import RedisServer
from tests.helpers.services import require


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


class ClusterTopology:
    """``masters`` masters with ``replicas`` replicas each, all slots assigned."""

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 1) -> None:
        self.redis_cli = require("redis-cli", "apt-get install redis-tools")
        self.replicas = replicas
        self.nodes: dict[int, RedisServer] = {}
        for _ in range(masters * (1 + replicas)):
            port = free_cluster_port()
            self.nodes[port] = RedisServer(
                workdir / f"node-{port}",
                port,
                extra_args=cluster_node_args(port),
            )

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> ClusterTopology:
        try:
            for node in self.nodes.values():
                node.start()
            subprocess.run(
                cluster_create_argv(self.redis_cli, list(self.nodes), self.replicas),
                check=True,
                capture_output=True,
                timeout=WAIT_S,
            )
            self.wait_healthy()
            self.wait_replicas()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_replicas(self, timeout: float = WAIT_S) -> float:
        """Each master has its replicas, every one in sync: a failover can promote it."""

        def synced() -> bool:
            roles = [_client(port).info("replication") for port in self.running()]
            replicas = [info for info in roles if info["role"] == "slave"]
            return len(replicas) == self.replicas * len(self.masters()) and all(
                info["master_link_status"] == "up" for info in replicas
            )

        return wait_for(synced, timeout, "replicas in sync")

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def wait_healthy(self, timeout: float = WAIT_S) -> float:
        """Every running node says ``cluster_state:ok`` and agrees on who masters all slots."""

        def healthy() -> bool:
            views = set()
            for port in self.running():
                client = _client(port)
                if not self._ok(client):
                    return False
                views.add(tuple(sorted(self._slot_owners(client).items())))
            return len(views) == 1 and sum(hi - lo + 1 for (lo, hi), _port in views.pop()) == 16384

        return wait_for(healthy, timeout, "cluster healthy")

    # -- queries --------------------------------------------------------------------

    def running(self) -> list[int]:
        return [port for port, node in self.nodes.items() if node.process is not None]

    @property
    def seeds(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.running()]

    def url(self, scheme: str = "redis+cluster") -> str:
        return f"{scheme}://" + ",".join(f"127.0.0.1:{port}" for port in self.running()[:3])

    def _any_client(self) -> redis.Redis:
        for port in self.running():
            client = _client(port)
            try:
                client.ping()
                return client
            except redis.RedisError:
                continue
        raise RuntimeError("no cluster node answers")

    @staticmethod
    def _slot_owners(client: redis.Redis) -> dict[tuple[int, int], int]:
        """(first slot, last slot) -> port of the master, from CLUSTER SLOTS."""
        return {(int(lo), int(hi)): int(nodes[1]) for lo, hi, nodes, *_ in client.execute_command("CLUSTER SLOTS")}

    def masters(self) -> list[int]:
        """Ports of the masters that own slots, as the cluster sees it now."""
        return sorted(set(self._slot_owners(self._any_client()).values()))

    def master_of(self, key: str) -> int:
        slot = key_slot(key.encode())
        for (lo, hi), port in self._slot_owners(self._any_client()).items():
            if lo <= slot <= hi:
                return port
        raise LookupError(f"slot {slot} has no master")

    def node_id(self, port: int) -> str:
        return str(_client(port).execute_command("CLUSTER MYID").decode())

    def client(self, port: int) -> redis.Redis:
        return _client(port)

    # -- faults ---------------------------------------------------------------------

    def kill(self, port: int) -> None:
        """kill -9 by PID."""
        self.nodes[port].kill()

    def pause(self, port: int) -> None:
        self.nodes[port].signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.nodes[port].signal(signal.SIGCONT)

    def restart(self, port: int) -> None:
        """Start a killed node again on its port; its nodes.conf makes it rejoin (as a replica if it lost)."""
        self.nodes[port].start()

    def wait_failover(self, old_master: int, timeout: float = WAIT_S) -> float:
        """Seconds until the slots ``old_master`` held are owned by another master and the cluster is ok."""
        slots = [rng for rng, port in self._slot_owners(self._any_client()).items() if port == old_master]

        def moved() -> bool:
            owners = self._slot_owners(self._any_client())
            return all(owners.get(rng) not in (None, old_master) for rng in slots)

        took = wait_for(moved, timeout, f"failover away from {old_master}")
        took += wait_for(lambda: self._all_ok(), timeout, "cluster ok after failover")
        return took

    @staticmethod
    def _ok(client: redis.Redis) -> bool:
        return bool(client.execute_command("CLUSTER INFO")["cluster_state"] == "ok")

    def _all_ok(self) -> bool:
        return all(self._ok(_client(p)) for p in self.running())

    def heal(self, timeout: float = WAIT_S) -> None:
        """After faults: every node running and healthy again, each replica in sync with its master."""
        for port, node in self.nodes.items():
            if node.process is None:
                self.restart(port)
        self.wait_healthy(timeout)
        self.wait_replicas(timeout)

    def migrate_slot_of(self, key: str, target: int) -> int:
        """Move the slot of ``key`` (and its keys) to master ``target``, as ``redis-cli --cluster reshard`` does.

        IMPORTING on the target, MIGRATING on the source, MIGRATE the keys, then
        SETSLOT NODE on every master (target first). Returns the slot.
        """
        slot = key_slot(key.encode())
        source = self.master_of(key)
        if source == target:
            raise ValueError(f"slot {slot} is already on {target}")
        src, dst = _client(source), _client(target)
        src_id, dst_id = self.node_id(source), self.node_id(target)
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for port in [target, *(p for p in self.masters() if p != target)]:
            _client(port).execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        wait_for(lambda: self.master_of(key) == target, WAIT_S, f"slot {slot} on {target} everywhere")
        self.wait_healthy()
        return slot


class SentinelTopology:
    """One master, ``replicas`` replicas, three sentinels watching them as :data:`SENTINEL_MASTER`."""

    def __init__(self, workdir: Path, sentinels: int = 3, replicas: int = 1) -> None:
        self.workdir = workdir
        fast_sync = ["--repl-diskless-sync-delay", "0"]
        self.master = RedisServer(workdir / "master", extra_args=fast_sync)
        self.replicas = [RedisServer(workdir / f"replica-{i}") for i in range(replicas)]
        for replica in self.replicas:
            replica.extra_args = [*fast_sync, "--replicaof", "127.0.0.1", str(self.master.port)]
        self.sentinels: list[RedisServer] = []
        for i in range(sentinels):
            config = workdir / f"sentinel-{i}" / "sentinel.conf"
            self.sentinels.append(RedisServer(config.parent, config=config, extra_args=["--sentinel"]))

    @property
    def servers(self) -> dict[int, RedisServer]:
        return {server.port: server for server in (self.master, *self.replicas)}

    def start(self) -> SentinelTopology:
        try:
            self.master.start()
            for replica in self.replicas:
                replica.start()
            wait_for(lambda: all(self._in_sync(r.port) for r in self.replicas), WAIT_S, "replicas in sync")
            for sentinel in self.sentinels:
                assert sentinel.config is not None
                sentinel.config.parent.mkdir(parents=True, exist_ok=True)
                sentinel.config.write_text(sentinel_config(self.master.port))
                sentinel.start()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in [*self.sentinels, self.master, *self.replicas]:
            server.stop()

    @staticmethod
    def _in_sync(port: int) -> bool:
        info = _client(port).info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def wait_healthy(self, timeout: float = WAIT_S) -> float:
        """Every sentinel agrees on a live master that has its replicas in sync, and sees the other sentinels."""

        def healthy() -> bool:
            masters = set()
            for sentinel in self.sentinels:
                state = _client(sentinel.port).sentinel_master(SENTINEL_MASTER)
                if state["num-slaves"] < len(self.replicas) or state["num-other-sentinels"] < len(self.sentinels) - 1:
                    return False
                if "s_down" in state["flags"] or "o_down" in state["flags"]:
                    return False
                masters.add(state["port"])
            if len(masters) != 1:
                return False
            port = masters.pop()
            replicas = [p for p in self.servers if p != port]
            return _client(port).info("replication")["role"] == "master" and all(self._in_sync(p) for p in replicas)

        return wait_for(healthy, timeout, "sentinel set healthy")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SENTINEL_MASTER}"

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def master_port(self) -> int:
        """The master as the sentinels announce it now."""
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            try:
                _host, port = _client(sentinel.port).sentinel_get_master_addr_by_name(SENTINEL_MASTER)
                return int(port)
            except redis.RedisError:
                continue
        raise RuntimeError("no sentinel answers")

    def client_of(self, port: int) -> redis.Redis:
        return _client(port)

    def kill(self, port: int) -> None:
        self.servers[port].kill()

    def pause(self, port: int) -> None:
        self.servers[port].signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.servers[port].signal(signal.SIGCONT)

    def wait_failover(self, old_master: int, timeout: float = WAIT_S) -> float:
        """Seconds until the sentinels announce another master and it answers as one."""

        def promoted() -> bool:
            port = self.master_port()
            return port != old_master and _client(port).info("replication")["role"] == "master"

        return wait_for(promoted, timeout, f"sentinel failover away from {old_master}")

    def heal(self, timeout: float = WAIT_S) -> None:
        """Restart whatever was killed, as a replica of the current master, and wait until all is healthy."""
        for server in self.servers.values():
            if server.process is None:
                # As the sentinels would reconfigure it, only without waiting for them to notice.
                server.extra_args = [
                    "--repl-diskless-sync-delay",
                    "0",
                    "--replicaof",
                    "127.0.0.1",
                    str(self.master_port()),
                ]
                server.start()
        self.wait_healthy(timeout)
