"""The broker contract suite (``tests/integration/test_broker_contract.py``) on Sentinel and on Redis Cluster.

The contract's tests that take ``broker`` or ``broker_factory`` are imported here
and run against ``open_broker`` of a ``redis+sentinel://`` and a
``redis+cluster://`` URL (the module's topologies, shared by every test); the
contract module itself runs them on ``memory://`` and one ``redis-server``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from tests.integration import test_broker_contract as contract
from tests.integration.test_broker_contract import broker, broker_factory  # noqa: F401  (fixtures)

pytestmark = pytest.mark.redis

#: the contract tests that run on whatever ``redis_url`` is (the others are about one server's internals)
CONTRACT = {
    name: test
    for name, test in vars(contract).items()
    if name.startswith("test_") and {"broker", "broker_factory"} & set(inspect.signature(test).parameters)
}
globals().update(CONTRACT)


@pytest.fixture(params=["sentinel", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """The topology's URL; its keys are isolated by ``key_prefix`` as on one server."""
    topology: Any = request.getfixturevalue("sentinel_set" if request.param == "sentinel" else "redis_cluster")
    return str(topology.url if request.param == "sentinel" else topology.url())
