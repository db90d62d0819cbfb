"""Two ``herald serve`` replicas sharing one redis-server: the cluster as clients see it.

The replicas and their private redis-server are started once for the module
(so Redis' command counters and client list are ours alone); tests isolate by
room name.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection

from api.errors import CloseCode, ErrorCode
from broker import parse_offset
from tests.helpers.chat import (
    Frame,
    close_code,
    connect,
    frame_where,
    is_message,
    messages_until,
    post_message,
    say,
    send,
)
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

HISTORY_SIZE = 5
MAX_BYTES = 4096
WITHIN_S = 10.0


@pytest.fixture(scope="module")
def cluster_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("replicas-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(cluster_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Herald, Herald]]:
    logs = tmp_path_factory.mktemp("replicas")
    env = {
        "HERALD_HISTORY_SIZE": str(HISTORY_SIZE),
        "HERALD_MAX_MESSAGE_BYTES": str(MAX_BYTES),
        # no presence refresh (an EVALSHA) during a test: the command counts below stay exact
        "HERALD_PRESENCE_TTL_S": "900",
        "HERALD_KEY_PREFIX": f"t{uuid.uuid4().hex[:10]}",
    }
    started: list[Herald] = []
    try:
        for name in ("A", "B"):
            started.append(Herald(logs, cluster_redis.url, name, **env).start())
        yield started[0], started[1]
    finally:
        for herald in started:
            herald.stop()


async def messages_counted(ws: ClientConnection, count: int) -> list[Frame]:
    async def collect() -> list[Frame]:
        return [await frame_where(ws, is_message) for _ in range(count)]

    return await asyncio.wait_for(collect(), WITHIN_S)


async def joined(herald: Herald, room: str, user: str, **query: str) -> tuple[ClientConnection, Frame]:
    """Connect; return once the replica has finished the join (its presence entry and join frame)."""
    ws, welcome = await connect(herald.ws, room, user=user, **query)
    await send(ws, {"type": "ping"})
    await frame_where(ws, lambda f: f["type"] == "pong")
    return ws, welcome


async def post(herald: Herald, room: str, text: str) -> str:
    return await post_message(herald.http, room, text)


async def close_all(sockets: list[ClientConnection]) -> None:
    await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets)), WITHIN_S)


def pid(herald: Herald) -> int:
    assert herald.process is not None
    return herald.process.pid


def local_ports(process_id: int) -> set[int]:
    """Local TCP ports of the sockets ``process_id`` holds (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{process_id}/fd"):
        try:
            target = os.readlink(f"/proc/{process_id}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def pubsub_connections_of(client: redis.Redis, herald: Herald) -> list[dict[str, str]]:
    ports = local_ports(pid(herald))
    return [c for c in client.client_list(_type="pubsub") if int(c["addr"].rsplit(":", 1)[1]) in ports]


def command_calls(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in client.info("commandstats").items()}


# -- delivery across replicas ------------------------------------------------------------------


async def test_a_message_reaches_every_client_in_the_room_on_both_replicas_once_and_in_order(
    replicas: tuple[Herald, Herald], room: str
) -> None:
    a, b = replicas
    on_a = [(await joined(a, room, f"a{n}"))[0] for n in range(3)]
    on_b = [(await joined(b, room, f"b{n}"))[0] for n in range(3)]
    for n in range(10):
        await say(on_a[0], f"from-a-{n}")
        await say(on_b[0], f"from-b-{n}")
    everyone = on_a + on_b
    seen = await asyncio.gather(*(messages_counted(ws, 20) for ws in everyone))
    reference = seen[0]
    for frames in seen:
        assert frames == reference, "every client, on either replica, sees the same messages in the same order"
    texts = [f["text"] for f in reference]
    assert [t for t in texts if t.startswith("from-a")] == [f"from-a-{n}" for n in range(10)]
    assert [t for t in texts if t.startswith("from-b")] == [f"from-b-{n}" for n in range(10)]
    positions = [parse_offset(f["id"]) for f in reference]
    assert positions == sorted(set(positions)), "ids strictly increase: no duplicate"
    await say(on_b[1], "barrier")  # sent after everything arrived: whatever comes before it is a duplicate
    for ws in everyone:
        assert [f["text"] for f in await messages_until(ws, "barrier")] == ["barrier"]
    await close_all(everyone)


async def test_clients_in_other_rooms_get_nothing(replicas: tuple[Herald, Herald], room: str) -> None:
    sender, _ = await joined(replicas[0], room, "sender")
    others = [(await joined(herald, room + "-other", f"o{n}"))[0] for n, herald in enumerate(replicas)]
    for n in range(5):
        await say(sender, f"not for you {n}")
    await messages_until(sender, "not for you 4")
    await say(others[0], "barrier")
    for ws in others:
        assert [f["text"] for f in await messages_until(ws, "barrier")] == ["barrier"]
    await close_all([sender, *others])


async def test_a_message_posted_over_http_on_one_replica_reaches_sockets_on_the_other(
    replicas: tuple[Herald, Herald], room: str
) -> None:
    a, b = replicas
    ws, _ = await joined(b, room, "reader")
    offset = await post(a, room, "via http")
    [frame] = await messages_until(ws, "via http")
    assert (frame["id"], frame["user"]) == (offset, "anonymous")
    await ws.close()


async def test_clients_joining_either_replica_during_a_burst_see_every_later_message_once(
    replicas: tuple[Herald, Herald], room: str
) -> None:
    published: list[str] = []

    async def burst() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            for n in range(60):
                herald = replicas[n % 2]
                response = await http.post(f"{herald.http}/api/chat/{room}/messages", json={"text": f"m{n}"})
                published.append(response.json()["id"])

    async def latecomer(n: int) -> tuple[ClientConnection, Frame]:
        await asyncio.sleep(0.02 * n)
        return await connect(replicas[n % 2].ws, room, user=f"late{n}")

    sender = asyncio.create_task(burst())
    clients = await asyncio.wait_for(asyncio.gather(*(latecomer(n) for n in range(8))), WITHIN_S)
    await asyncio.wait_for(sender, WITHIN_S)
    assert any(welcome["offset"] is not None and welcome["offset"] != published[-1] for _, welcome in clients)
    for ws, welcome in clients:
        start = welcome["offset"]
        expected = [o for o in published if start is None or parse_offset(o) > parse_offset(start)]
        frames = await messages_counted(ws, len(expected))
        assert [f["id"] for f in frames] == expected, f"joined {welcome['replica']} at {start}"
    await post(replicas[0], room, "barrier")
    for ws, _ in clients:
        assert [f["text"] for f in await messages_until(ws, "barrier")] == ["barrier"]
    await close_all([ws for ws, _ in clients])


# -- reconnecting elsewhere -----------------------------------------------------------------------


async def test_a_client_reconnecting_to_the_other_replica_with_since_gets_exactly_what_it_missed_then_live(
    replicas: tuple[Herald, Herald], room: str
) -> None:
    a, b = replicas
    talker, _ = await joined(b, room, "talker")
    roamer, _ = await joined(a, room, "roamer")
    await say(talker, "seen")
    last_seen = (await messages_until(roamer, "seen"))[-1]["id"]
    await roamer.close()
    for n in range(3):
        await say(talker, f"missed {n}")
    missed = (await messages_until(talker, "missed 2"))[-3:]
    back, welcome = await connect(b.ws, room, user="roamer", since=last_seen)
    assert (welcome["replica"], welcome["recovered"], welcome["offset"]) == ("B", True, missed[-1]["id"])
    await say(talker, "live")
    frames = await messages_until(back, "live")
    assert [f["text"] for f in frames] == ["missed 0", "missed 1", "missed 2", "live"]
    assert [f["id"] for f in frames[:3]] == [f["id"] for f in missed]
    await close_all([talker, back])


async def test_since_older_than_the_retained_history_is_not_recovered_on_either_replica(
    replicas: tuple[Herald, Herald], room: str
) -> None:
    offsets = [await post(replicas[0], room, f"m{n}") for n in range(HISTORY_SIZE + 2)]
    for herald in replicas:
        ws, welcome = await connect(herald.ws, room, since=offsets[0])
        assert (welcome["recovered"], welcome["offset"]) == (False, offsets[-1])
        assert [f["id"] for f in await messages_until(ws, f"m{HISTORY_SIZE + 1}")] == offsets[-HISTORY_SIZE:]
        await ws.close()
        ws, welcome = await connect(herald.ws, room, since="0")
        assert welcome["recovered"] is False
        await ws.close()
        ws, welcome = await connect(herald.ws, room, since=offsets[1])  # the newest trimmed: nothing lost after it
        assert welcome["recovered"] is True
        await ws.close()


async def test_since_zero_is_recovered_on_both_replicas_while_nothing_was_trimmed(
    replicas: tuple[Herald, Herald], room: str
) -> None:
    offsets = [await post(replicas[1], room, f"m{n}") for n in range(3)]
    for herald in replicas:
        ws, welcome = await connect(herald.ws, room, since="0")
        assert (welcome["recovered"], welcome["offset"]) == (True, offsets[-1])
        assert [f["id"] for f in await messages_until(ws, "m2")] == offsets
        await ws.close()


async def test_the_welcome_offset_is_the_newest_retained_on_both_replicas_even_when_nothing_was_sent(
    replicas: tuple[Herald, Herald], room: str
) -> None:
    for herald in replicas:
        ws, welcome = await connect(herald.ws, room)
        assert welcome["offset"] is None
        await ws.close()
    offset = await post(replicas[0], room, "one")
    for herald in replicas:
        ws, welcome = await connect(herald.ws, room)
        assert welcome["offset"] == offset
        await ws.close()


# -- cost: one round trip per publish, one pub/sub connection per replica -----------------------


async def test_one_publish_is_one_redis_round_trip_however_many_clients_and_replicas_listen(
    replicas: tuple[Herald, Herald], cluster_redis: RedisServer, room: str
) -> None:
    listeners = [(await joined(herald, room, f"u{n}"))[0] for herald in replicas for n in range(4)]
    sender = listeners[0]
    await say(sender, "warm-up")  # loads the script on Redis if no replica has yet
    await messages_until(sender, "warm-up")
    stats = cluster_redis.client()
    try:
        before = command_calls(stats)
        for n in range(HISTORY_SIZE - 1):  # the stream is not trimmed yet: no XRANGE/XTRIM in the script
            await say(sender, f"m{n}")
        for ws in listeners:
            await messages_until(ws, f"m{HISTORY_SIZE - 2}")
        after = command_calls(stats)
    finally:
        stats.close()
    delta = {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}
    assert delta.pop("info") == 1
    sent = HISTORY_SIZE - 1
    # one EVALSHA per message; the script's own XADD, HSETNX, XLEN, two EXPIREs (HERALD_HISTORY_TTL_S)
    # and PUBLISH are counted too, and nothing else ran
    assert delta == {"evalsha": sent, "xadd": sent, "hsetnx": sent, "xlen": sent, "expire": 2 * sent, "publish": sent}
    await close_all(listeners)


async def test_each_replica_holds_one_pubsub_connection_whatever_its_rooms_and_clients(
    replicas: tuple[Herald, Herald], cluster_redis: RedisServer, room: str
) -> None:
    sockets = [(await joined(herald, f"{room}-{n % 3}", f"u{n}"))[0] for herald in replicas for n in range(6)]
    client = cluster_redis.client()
    try:
        for herald in replicas:
            [connection] = pubsub_connections_of(client, herald)
            assert "P" in connection["flags"]
            assert int(connection["sub"]) >= 3  # its 3 rooms (and its control channel)
        assert len(client.client_list(_type="pubsub")) == 2
        for n in range(3):
            [(_, count)] = client.pubsub_numsub(f"{replicas[0].env['HERALD_KEY_PREFIX']}:{{chat:{room}-{n}}}:events")
            assert count == 2, "one subscription per replica, not per client"
    finally:
        client.close()
    await close_all(sockets)


# -- bad input --------------------------------------------------------------------------------


async def test_bad_input_gets_the_spec_answer_and_both_replicas_keep_serving(
    replicas: tuple[Herald, Herald], room: str
) -> None:
    a, b = replicas
    watcher, _ = await joined(b, room, "watcher")
    rude, _ = await joined(a, room, "rude")
    for junk, hint in (("nonsense", "仅支持JSON格式"), ('{"type":"yell"}', "unknown"), ('{"type":"message"}', "text")):
        await rude.send(junk)
        error = await frame_where(rude, lambda f: f["type"] in ("error", "message"))
        assert (error["type"], error["code"]) == ("error", ErrorCode.BAD_REQUEST)
        assert hint in error["detail"]
    await say(rude, "still welcome")
    await say(rude, "x" * (MAX_BYTES + 1))
    assert await close_code(rude) == CloseCode.MESSAGE_TOO_BIG
    async with httpx.AsyncClient(timeout=5) as http:
        for url in (f"{a.http}/ws/chat/bad!", f"{a.http}/ws/chat/{room}?since=later"):
            upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
            response = await http.get(url, headers={**upgrade, "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
            assert response.status_code == 403
    assert [f["text"] for f in await messages_until(watcher, "still welcome")] == ["still welcome"]
    for herald in replicas:
        ws, _ = await joined(herald, room, "newcomer")
        await say(ws, f"hello from {herald.replica_id}")
        await messages_until(watcher, f"hello from {herald.replica_id}")
        await ws.close()
    await watcher.close()


def test_neither_replica_logged_a_traceback(replicas: tuple[Herald, Herald]) -> None:
    for herald in replicas:
        assert "Traceback" not in herald.log(), herald.log()[-3000:]
