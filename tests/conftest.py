"""Shared fixtures.

Layers (``tests/unit/test_layers.py`` keeps files in theirs):

- ``tests/unit``: in-process, nothing real but the code: sans-I/O machines, pure
  functions, and the app through ``TestClient`` on fakeredis (``memory://``).
- ``tests/integration``: in-process against a real peer: a private
  ``redis-server`` started here on a free loopback port (skipped without the
  binary, failed instead when CI sets HERALD_REQUIRE_SERVICES=1), or uvicorn
  serving the app in the test's own event loop, or the server ``herald serve``
  runs, in a thread (``replica_factory``, tests/helpers/inprocess.py): measured
  by coverage, unlike a process.
- ``tests/e2e``: real ``herald serve`` processes (and nginx, chromium), for what
  needs one (signals, exit status, a process's memory or descriptors, a kill or
  SIGSTOP, other processes in between); marked ``e2e`` here, so
  ``pytest -m "not e2e"`` runs everything in-process.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.helpers.inprocess import InProcessReplica
from tests.helpers.servers import Herald, RedisServer

#: one time unit for tests: waits are multiples of it
MS = 0.001

_replicas = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    e2e = Path(__file__).parent / "e2e"
    for item in items:
        if e2e in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {"redis_url": "memory://", "replica_id": "test", "heartbeat_s": 30.0}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def client_factory(settings_factory: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """In-process apps (fakeredis unless told otherwise), closed after the test."""
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        client = TestClient(create_app(settings_factory(**overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_factory: Callable[..., TestClient]) -> TestClient:
    return client_factory()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the session; tests isolate by ``key_prefix``."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, free to be killed and restarted."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def room() -> str:
    """A room name of this test alone."""
    return f"r{uuid.uuid4().hex[:8]}"


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def herald_factory(tmp_path: Path, key_prefix: str) -> Iterator[Callable[..., Herald]]:
    """Start ``herald serve`` replicas; every one is stopped by PID after the test."""
    started: list[Herald] = []

    def make(redis_url: str, replica_id: str | None = None, **env: str) -> Herald:
        env.setdefault("HERALD_KEY_PREFIX", key_prefix)
        # Tests publish in bulk over REST from one address; the write limit is tested where it is the
        # subject (tests/e2e/test_write_limits.py sets its own).
        env.setdefault("HERALD_HTTP_RATE_LIMIT", "100000")
        herald = Herald(tmp_path / "logs", redis_url, replica_id or f"r{next(_replicas)}", **env)
        started.append(herald.start())
        return herald

    yield make
    for herald in started:
        herald.stop()


@pytest.fixture
def replica_factory(key_prefix: str) -> Iterator[Callable[..., InProcessReplica]]:
    """``herald_factory``'s in-process twin, called the same way (``HERALD_*`` names for the settings): the
    server ``herald serve`` runs, in a thread of the test process (tests/helpers/inprocess.py)."""
    started: list[InProcessReplica] = []

    def make(redis_url: str, replica_id: str | None = None, **env: str) -> InProcessReplica:
        env.setdefault("HERALD_KEY_PREFIX", key_prefix)
        env.setdefault("HERALD_HTTP_RATE_LIMIT", "100000")  # as herald_factory: bulk REST publishes from one address
        settings = {name.removeprefix("HERALD_").lower(): value for name, value in env.items()}
        replica = InProcessReplica(redis_url=redis_url, replica_id=replica_id or f"r{next(_replicas)}", **settings)
        started.append(replica.start())
        return replica

    yield make
    for replica in started:
        replica.stop()
