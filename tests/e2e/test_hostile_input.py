"""SPEC §8, "no input, however malformed or large, crashes a replica or leaks its
connection": property-based junk (hypothesis, bounded examples) thrown at one real
``herald serve`` over real sockets: random bytes, random JSON, protocol-shaped
frames, hostile handshakes and broken WebSocket framing, on chat and on
``/graphql`` (both subprotocols). After each attack the replica answers
``/health`` and holds no connection, channel or subscription."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect
from websockets.sync.connection import Connection as ClientConnection
from websockets.typing import Subprotocol

from api.errors import CloseCode, ErrorCode
from tests.helpers.chat import masked_frame, metric, raw_handshake, wait_until
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MAX_BYTES = 4096
ROOM = "hostile"


def attack_settings(examples: int) -> settings:
    """Bounded, so the whole module runs in seconds; no example database written to the tree."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


#: what a chat client may legitimately see, and how a hostile chat socket may end
CHAT_FRAMES = {"welcome", "message", "join", "leave", "heartbeat", "error", "presence", "pong"}
CHAT_ERRORS = {ErrorCode.BAD_REQUEST, ErrorCode.RATE_LIMITED}
CHAT_CLOSES = {CloseCode.MESSAGE_TOO_BIG, CloseCode.TRY_AGAIN_LATER}
#: graphql-transport-ws closes for a misbehaving client (never 4500: that would be our bug)
GRAPHQL_CLOSES = {
    CloseCode.NORMAL,
    CloseCode.MESSAGE_TOO_BIG,
    CloseCode.GQL_BAD_REQUEST,
    CloseCode.GQL_UNAUTHORIZED,
    CloseCode.GQL_FORBIDDEN,
    CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT,
    CloseCode.GQL_SUBSCRIBER_ALREADY_EXISTS,
    CloseCode.GQL_TOO_MANY_INITIALISATION_REQUESTS,
}

tried = 0  # hostile inputs sent, for the report


@pytest.fixture(scope="module")
def herald(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    replica = Herald(
        tmp_path_factory.mktemp("hostile"),
        redis_server.url,
        f"hostile-{prefix}",
        HERALD_KEY_PREFIX=prefix,
        HERALD_MAX_MESSAGE_BYTES=str(MAX_BYTES),
        HERALD_GRAPHQL_INIT_TIMEOUT_S="1",
    ).start()
    yield replica
    replica.stop()


@pytest.fixture(autouse=True)
def count_inputs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test reports how many hostile inputs it sent (``hostile_inputs`` in its user properties)."""
    before = tried
    yield
    request.node.user_properties.append(("hostile_inputs", tried - before))


def assert_unharmed(herald: Herald) -> None:
    """Alive, and nothing left behind: no socket, no channel, no subscription."""
    assert herald.process is not None and herald.process.poll() is None
    assert httpx.get(f"{herald.http}/health", timeout=5).status_code == 200

    def clean() -> bool:
        return (
            metric(herald.http, "herald_connections", 'endpoint="chat"') == 0
            and metric(herald.http, "herald_connections", 'endpoint="graphql"') == 0
            and metric(herald.http, "herald_channels") == 0
            and metric(herald.http, "herald_graphql_subscriptions") == 0
        )

    wait_until(clean, 10, "connections, channels and subscriptions to drain")
    assert "Exception in ASGI application" not in herald.log()


# -- strategies --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
chat_types = st.sampled_from(["message", "ping", "presence", "join", "leave", "welcome", "error", ""]) | st.text(
    max_size=12
)
chat_shaped = st.fixed_dictionaries(
    {"type": chat_types | json_values},
    optional={"text": st.text(max_size=200) | json_values, "room": json_values, "id": json_values},
).map(lambda frame: json.dumps(frame))
text_frames = st.one_of(
    st.text(max_size=300),
    json_values.map(lambda value: json.dumps(value)),
    chat_shaped,
    st.just('{"type":"message","text":"' + "x" * (MAX_BYTES + 10) + '"}'),  # over the limit
    st.just("{" * 2000 + "}" * 2000),  # deep nesting
)
frames = st.lists(st.one_of(text_frames, st.binary(max_size=300)), min_size=1, max_size=6)


def _send_all(ws: ClientConnection, batch: list[str | bytes]) -> bool:
    """Send the frames; False once the server has closed the socket."""
    global tried
    for frame in batch:
        tried += 1
        try:
            ws.send(frame)
        except ConnectionClosed:
            return False
    return True


# -- chat ----------------------------------------------------------------------------------------


def test_junk_frames_on_chat_get_error_frames_or_a_documented_close(herald: Herald) -> None:
    @attack_settings(150)
    @given(batch=frames)
    def attack(batch: list[str | bytes]) -> None:
        with connect(f"{herald.ws}/ws/chat/{ROOM}?user=fuzz", open_timeout=5, close_timeout=2) as ws:
            assert orjson.loads(ws.recv(timeout=5))["type"] == "welcome"
            if _send_all(ws, [*batch, '{"type":"ping"}']):
                _read_until_pong(ws)

    attack()
    assert_unharmed(herald)


def _read_until_pong(ws: ClientConnection) -> None:
    while True:
        try:
            frame: dict[str, Any] = orjson.loads(ws.recv(timeout=5))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in CHAT_CLOSES, closed
            return
        assert frame["type"] in CHAT_FRAMES, frame
        if frame["type"] == "error":
            assert frame["code"] in CHAT_ERRORS, frame
        if frame["type"] == "pong":
            return


handshake_text = st.text(max_size=80)


def test_hostile_handshakes_on_chat_are_welcomed_or_refused(herald: Herald) -> None:
    @attack_settings(100)
    @given(room=handshake_text, user=handshake_text, since=handshake_text, token=handshake_text)
    def attack(room: str, user: str, since: str, token: str) -> None:
        global tried
        tried += 1
        query = f"user={quote(user)}&since={quote(since)}&token={quote(token)}"
        try:
            with connect(f"{herald.ws}/ws/chat/{quote(room, safe='')}?{query}", open_timeout=5) as ws:
                welcome = orjson.loads(ws.recv(timeout=5))
                assert welcome["type"] == "welcome" and welcome["room"] == room
        except InvalidStatus as refused:
            assert refused.response.status_code in (403, 404), refused

    attack()
    assert_unharmed(herald)


def _until_eof(sock: socket.socket, seconds: float = 5.0) -> bool:
    sock.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_broken_websocket_framing_and_non_http_bytes_end_the_connection(herald: Herald) -> None:
    @attack_settings(100)
    @given(junk=st.binary(min_size=1, max_size=2048), after_handshake=st.booleans(), opcode=st.integers(0, 15))
    def attack(junk: bytes, after_handshake: bool, opcode: int) -> None:
        global tried
        tried += 1
        if after_handshake:
            sock = raw_handshake(herald.port, f"/ws/chat/{ROOM}?user=raw", receive_buffer=None)
            # Either a frame with any opcode (reserved ones included) or raw bytes that are no frame at all.
            sock.sendall(masked_frame(opcode, junk) if opcode % 2 else junk)
        else:
            sock = socket.create_connection(("127.0.0.1", herald.port), timeout=5)
            sock.sendall(junk)
        with sock:
            sock.shutdown(socket.SHUT_WR)  # and then nothing more: the server must not wait forever
            assert _until_eof(sock), "the server kept the connection open"

    attack()
    assert_unharmed(herald)


# -- graphql ---------------------------------------------------------------------------------------

DOCUMENTS = [
    "subscription { newBook { isbn title } }",
    'subscription { chatMessage(room: "hostile") { id text } }',
    'subscription { chatMessage(room: "no such room!") { id } }',
    "query { books { isbn } }",
    "{ __schema { types { name } } }",
    'mutation { sendMessage(room: "hostile", text: "hi") { id } }',
    "subscription { newBook { isbn } } subscription { newBook { title } }",
    "{" * 300 + "}" * 300,
]
graphql_types = st.sampled_from(
    ["connection_init", "subscribe", "complete", "ping", "pong", "start", "stop", "connection_terminate", "next"]
)
graphql_shaped = st.fixed_dictionaries(
    {"type": graphql_types | json_values},
    optional={
        "id": st.sampled_from(["1", "2"]) | json_values,
        "payload": st.fixed_dictionaries(
            {"query": st.sampled_from(DOCUMENTS) | json_values},
            optional={
                "variables": json_values,
                "operationName": json_values,
            },
        )
        | json_values,
    },
).map(lambda frame: json.dumps(frame))
graphql_frames = st.lists(st.one_of(graphql_shaped, text_frames, st.binary(max_size=200)), min_size=1, max_size=6)


@pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
def test_junk_on_graphql_websockets_never_crashes_or_leaks(herald: Herald, subprotocol: str) -> None:
    @attack_settings(60)
    @given(batch=graphql_frames)
    def attack(batch: list[str | bytes]) -> None:
        init = '{"type":"connection_init","payload":{}}'
        with connect(
            f"{herald.ws}/graphql", subprotocols=[Subprotocol(subprotocol)], open_timeout=5, close_timeout=2
        ) as ws:
            if _send_all(ws, [init, *batch]):
                _read_a_while(ws)

    try:
        attack()
    except InvalidHandshake:
        pytest.fail("the /graphql WebSocket refused the handshake")
    assert_unharmed(herald)


def _read_a_while(ws: ClientConnection, quiet_s: float = 0.1) -> None:
    """Read what the server says until it is quiet or closes; closes must be the protocol's own."""
    while True:
        try:
            raw = ws.recv(timeout=quiet_s)
        except TimeoutError:
            return
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in GRAPHQL_CLOSES, closed
            return
        frame = orjson.loads(raw)
        assert isinstance(frame, dict) and "type" in frame, frame
