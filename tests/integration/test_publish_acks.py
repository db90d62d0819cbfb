"""SPEC §9 durability on one server and on Sentinel: ``WAIT`` after the publish script, and refusals
that say what happened (nothing sent -> unavailable; sent but not confirmed -> "not confirmed")."""

from __future__ import annotations

import json
import socket

import pytest

from broker import BrokerOptions, OutcomeUnknown, Unavailable, chat_channel, open_broker
from broker.errors import NotConfirmed
from tests.helpers.servers import RedisServer

pytestmark = pytest.mark.redis


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_no_master_to_ask_for_is_unavailable_not_outcome_unknown(key_prefix: str) -> None:
    # The sentinels cannot name a master (none reachable here): redis-py raises MasterNotFoundError before
    # anything is sent, so the publish certainly did not happen: "unavailable", not "outcome unknown".
    broker = open_broker(
        f"redis+sentinel://127.0.0.1:{unused_port()}/mymaster", BrokerOptions(replica_id="r", prefix=key_prefix)
    )
    try:
        for _ in range(2):  # a lone publish, then one that joins a pipeline
            with pytest.raises(Unavailable) as refused:
                await broker.publish(chat_channel("room"), json.dumps({"n": 1}))
            assert not isinstance(refused.value, OutcomeUnknown), refused.value
    finally:
        await broker.close()


async def test_a_publish_no_replica_confirms_is_not_confirmed_but_stored(
    redis_server: RedisServer, key_prefix: str
) -> None:
    options = BrokerOptions(replica_id="r", prefix=key_prefix, min_replicas_ack=1, ack_timeout_ms=20)
    broker = open_broker(redis_server.url, options)
    try:
        await broker.start()
        with pytest.raises(NotConfirmed, match="not confirmed by 1 redis replica"):
            await broker.publish(chat_channel("room"), json.dumps({"n": 1}))
        # it ran on the master: it is there, and may well be delivered
        assert [json.loads(e.data) for e in await broker.history(chat_channel("room"))] == [{"n": 1}]
    finally:
        await broker.close()
