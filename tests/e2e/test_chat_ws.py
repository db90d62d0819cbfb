"""SPEC §4 ``/ws/chat/{room}`` against one real ``herald serve`` (uvicorn, real redis-server).

One replica serves the whole module (``HERALD_HISTORY_SIZE=5``); every test
has rooms of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
import websockets
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
def herald(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    replica = Herald(
        tmp_path_factory.mktemp("chat-ws"),
        redis_server.url,
        "ws-replica",
        HERALD_KEY_PREFIX=f"t{uuid.uuid4().hex[:10]}",
        HERALD_HISTORY_SIZE=str(HISTORY_SIZE),
        HERALD_MAX_MESSAGE_BYTES=str(MAX_BYTES),
    ).start()
    yield replica
    replica.stop()


async def post(herald: Herald, room: str, text: str) -> str:
    return await post_message(herald.http, room, text)


async def handshake_status(url: str) -> int:
    """The HTTP status of a refused WebSocket handshake."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        ws = await websockets.connect(url, open_timeout=5)
        await ws.close()
    return refused.value.response.status_code


async def still_serving(herald: Herald, room: str) -> None:
    """A fresh client can still join and chat: the replica survived."""
    ws, _ = await connect(herald.ws, room, user="witness")
    await say(ws, "still here")
    assert (await frame_where(ws, is_message))["text"] == "still here"
    await ws.close()


# -- welcome ----------------------------------------------------------------------------


async def test_the_welcome_comes_first_and_names_room_user_and_replica(herald: Herald, room: str) -> None:
    ws, welcome = await connect(herald.ws, room, user="ann")
    assert welcome == {"type": "welcome", "room": room, "user": "ann", "replica": "ws-replica", "offset": None}
    await ws.close()


async def test_a_client_without_a_user_name_is_anonymous(herald: Herald, room: str) -> None:
    ws, welcome = await connect(herald.ws, room)
    assert welcome["user"] == "anonymous"
    await say(ws, "who am I")
    assert (await frame_where(ws, is_message))["user"] == "anonymous"
    await ws.close()


async def test_the_welcome_offset_is_the_newest_retained_even_when_nothing_was_sent_here(
    herald: Herald, room: str
) -> None:
    offsets = [await post(herald, room, f"m{n}") for n in range(3)]
    ws, welcome = await connect(herald.ws, room)
    assert welcome["offset"] == offsets[-1]
    assert "recovered" not in welcome
    await ws.close()


async def test_a_client_without_since_gets_no_history_only_live_messages(herald: Herald, room: str) -> None:
    await post(herald, room, "before")
    ws, _ = await connect(herald.ws, room)
    offset = await post(herald, room, "after")
    assert [(f["id"], f["text"]) for f in await messages_until(ws, "after")] == [(offset, "after")]
    await ws.close()


# -- chatting ---------------------------------------------------------------------------


async def test_a_message_reaches_everyone_in_the_room_including_its_sender_in_order(herald: Herald, room: str) -> None:
    ann, _ = await connect(herald.ws, room, user="ann")
    bob, _ = await connect(herald.ws, room, user="bob")
    for n in range(5):
        await say(ann, f"a{n}")
    seen_by_ann = await messages_until(ann, "a4")
    seen_by_bob = await messages_until(bob, "a4")
    assert seen_by_ann == seen_by_bob
    assert [f["text"] for f in seen_by_bob] == [f"a{n}" for n in range(5)]
    first = seen_by_bob[0]
    assert set(first) == {"id", "type", "room", "user", "text", "ts"}
    assert (first["type"], first["room"], first["user"]) == ("message", room, "ann")
    positions = [parse_offset(f["id"]) for f in seen_by_bob]
    assert positions == sorted(set(positions))
    for ws in (ann, bob):
        await ws.close()


async def test_a_message_frame_id_is_its_stored_offset(herald: Herald, room: str) -> None:
    ws, _ = await connect(herald.ws, room)
    await say(ws, "stored")
    frame = await frame_where(ws, is_message)
    async with httpx.AsyncClient(timeout=5) as client:
        stored = (await client.get(f"{herald.http}/api/chat/{room}/messages")).json()
    assert [(m["id"], m["text"]) for m in stored] == [(frame["id"], "stored")]
    await ws.close()


async def test_clients_in_other_rooms_get_nothing(herald: Herald, room: str) -> None:
    here, _ = await connect(herald.ws, room)
    elsewhere, _ = await connect(herald.ws, room + "x")
    await say(here, "for this room")
    await messages_until(here, "for this room")
    await say(elsewhere, "barrier")
    assert [f["text"] for f in await messages_until(elsewhere, "barrier")] == ["barrier"]
    for ws in (here, elsewhere):
        await ws.close()


async def test_a_ping_gets_a_pong(herald: Herald, room: str) -> None:
    ws, _ = await connect(herald.ws, room)
    await send(ws, {"type": "ping"})
    assert await frame_where(ws, lambda f: f["type"] in ("pong", "message", "error")) == {"type": "pong"}
    await ws.close()


async def test_a_presence_request_gets_the_sorted_users_of_the_room(herald: Herald, room: str) -> None:
    sockets = [(await connect(herald.ws, room, user=user))[0] for user in ("zoe", "ann", "zoe")]
    await send(sockets[0], {"type": "presence"})
    frame = await frame_where(sockets[0], lambda f: f["type"] == "presence")
    assert frame == {"type": "presence", "room": room, "users": ["ann", "zoe"]}
    for ws in sockets:
        await ws.close()


async def test_heartbeats_arrive_every_heartbeat_interval(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], room: str
) -> None:
    fast = herald_factory(redis_server.url, HERALD_HEARTBEAT_S="0.05")
    ws, _ = await connect(fast.ws, room)
    beats = [await frame_where(ws, lambda f: f["type"] == "heartbeat", within=2) for _ in range(3)]
    assert all(set(beat) == {"type", "timestamp"} for beat in beats)
    stamps = [beat["timestamp"] for beat in beats]
    assert stamps == sorted(stamps) and all(isinstance(stamp, float | int) for stamp in stamps)
    await ws.close()


# -- since and recovery ---------------------------------------------------------------------


async def test_since_replays_exactly_what_was_missed_then_goes_live(herald: Herald, room: str) -> None:
    ws, _ = await connect(herald.ws, room)
    await say(ws, "seen")
    last_seen = (await frame_where(ws, is_message))["id"]
    await ws.close()
    missed = [await post(herald, room, f"missed{n}") for n in range(3)]
    back, welcome = await connect(herald.ws, room, since=last_seen)
    assert (welcome["recovered"], welcome["offset"]) == (True, missed[-1])
    live = await post(herald, room, "live")
    frames = await messages_until(back, "live")
    expected = [*zip(missed, ["missed0", "missed1", "missed2"], strict=True), (live, "live")]
    assert [(f["id"], f["text"]) for f in frames] == expected
    await back.close()


async def test_since_the_newest_offset_replays_nothing_and_is_recovered(herald: Herald, room: str) -> None:
    offset = await post(herald, room, "only")
    ws, welcome = await connect(herald.ws, room, since=offset)
    assert (welcome["recovered"], welcome["offset"]) == (True, offset)
    await say(ws, "next")
    assert [f["text"] for f in await messages_until(ws, "next")] == ["next"]
    await ws.close()


async def test_since_older_than_the_retained_history_is_not_recovered(herald: Herald, room: str) -> None:
    offsets = [await post(herald, room, f"m{n}") for n in range(HISTORY_SIZE + 3)]
    ws, welcome = await connect(herald.ws, room, since=offsets[0])
    assert (welcome["recovered"], welcome["offset"]) == (False, offsets[-1])
    replayed = await messages_until(ws, f"m{HISTORY_SIZE + 2}")
    assert [f["id"] for f in replayed] == offsets[-HISTORY_SIZE:]
    await ws.close()


async def test_since_zero_is_recovered_until_the_room_loses_a_message(herald: Herald, room: str) -> None:
    empty, welcome = await connect(herald.ws, room, since="0")
    assert (welcome["recovered"], welcome["offset"]) == (True, None)
    await empty.close()
    offsets = [await post(herald, room, f"m{n}") for n in range(HISTORY_SIZE)]
    full, welcome = await connect(herald.ws, room, since="0")
    assert (welcome["recovered"], welcome["offset"]) == (True, offsets[-1])
    assert [f["id"] for f in await messages_until(full, f"m{HISTORY_SIZE - 1}")] == offsets
    await full.close()
    offsets.append(await post(herald, room, "one too many"))
    trimmed, welcome = await connect(herald.ws, room, since="0")
    assert (welcome["recovered"], welcome["offset"]) == (False, offsets[-1])
    assert [f["id"] for f in await messages_until(trimmed, "one too many")] == offsets[1:]
    await trimmed.close()


# -- bad input ------------------------------------------------------------------------------


async def error_frame(ws: ClientConnection) -> Frame:
    frame = await frame_where(ws, lambda f: f["type"] in ("error", "message", "pong"))
    assert frame["type"] == "error", frame
    assert set(frame) == {"type", "code", "detail"}
    return frame


@pytest.mark.parametrize(
    ("sent", "in_detail"),
    [
        ("not json at all", "仅支持JSON格式"),
        ('{"type":"message"', "仅支持JSON格式"),
        ("[1, 2]", ""),
        ('{"type":"shout","text":"hi"}', "unknown"),
        ('{"text":"hi"}', "type"),
        ('{"type":"message"}', "text"),
        ('{"type":"message","text":""}', "text"),
        ('{"type":"message","text":42}', "text"),
    ],
)
async def test_a_bad_frame_gets_a_bad_request_error_and_the_socket_stays_open(
    herald: Herald, room: str, sent: str, in_detail: str
) -> None:
    ws, _ = await connect(herald.ws, room)
    await ws.send(sent)
    frame = await error_frame(ws)
    assert frame["code"] == ErrorCode.BAD_REQUEST
    assert in_detail in frame["detail"]
    await send(ws, {"type": "ping"})
    assert await frame_where(ws, lambda f: f["type"] == "pong") == {"type": "pong"}
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"{herald.http}/api/chat/{room}/messages")).json() == []
    await ws.close()


async def test_a_binary_frame_gets_a_bad_request_error(herald: Herald, room: str) -> None:
    ws, _ = await connect(herald.ws, room)
    await ws.send(orjson.dumps({"type": "message", "text": "as bytes"}))
    assert (await error_frame(ws))["code"] == ErrorCode.BAD_REQUEST
    await ws.close()


async def test_a_frame_over_the_size_limit_closes_1009_and_others_carry_on(herald: Herald, room: str) -> None:
    bystander, _ = await connect(herald.ws, room, user="bystander")
    big, _ = await connect(herald.ws, room, user="big")
    await say(big, "x" * (MAX_BYTES + 1))
    assert await close_code(big) == CloseCode.MESSAGE_TOO_BIG
    await say(bystander, "unaffected")
    assert [f["text"] for f in await messages_until(bystander, "unaffected")] == ["unaffected"]
    await bystander.close()


@pytest.mark.parametrize("bad_room", ["bad!", "a%20b", "x" * 65, "%C3%A9t%C3%A9", "a:b"])
async def test_a_bad_room_name_refuses_the_handshake_with_403(herald: Herald, bad_room: str) -> None:
    assert await handshake_status(f"{herald.ws}/ws/chat/{bad_room}") == 403


@pytest.mark.parametrize("since", ["yesterday", "1-", "-5", "1-2-3", "18446744073709551616-0", "", "%EF%BC%91-2"])
async def test_a_bad_since_refuses_the_handshake_with_403(herald: Herald, room: str, since: str) -> None:
    assert await handshake_status(f"{herald.ws}/ws/chat/{room}?since={since}") == 403


async def test_refused_and_broken_clients_do_not_stop_the_replica(herald: Herald, room: str) -> None:
    ws, _ = await connect(herald.ws, room)
    for _ in range(3):
        await handshake_status(f"{herald.ws}/ws/chat/bad!")
        await ws.send("garbage")
        await error_frame(ws)
    half_open = await websockets.connect(f"{herald.ws}/ws/chat/{room}", open_timeout=5)
    half_open.transport.abort()  # vanishes without a close frame
    await still_serving(herald, room)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"{herald.http}/health")).status_code == 200
    await ws.close()


def test_the_replica_logged_no_traceback(herald: Herald) -> None:
    assert "Traceback" not in herald.log(), herald.log()[-3000:]
