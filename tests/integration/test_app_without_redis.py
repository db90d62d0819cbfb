"""The in-process app against a real redis-server that goes away (fakeredis cannot be killed)."""

from __future__ import annotations

import pytest

from tests.helpers.servers import RedisServer
from tests.unit.test_graphql_app import ADD_BOOK, Client, gql, messages_of


@pytest.mark.redis
def test_unavailable_redis_is_a_graphql_error(client_factory: Client, own_redis: RedisServer) -> None:
    client = client_factory(redis_url=own_redis.url)
    own_redis.kill()
    status, body = gql(client, "{ books { isbn } }")
    assert (status, messages_of(body)) == (200, ["redis is unavailable"])
    status, body = gql(client, ADD_BOOK, isbn="1")
    assert (status, messages_of(body)) == (503, ["redis is unavailable"])
