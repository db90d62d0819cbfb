"""What the ``herald serve`` topology tests share: cross-replica presence and GraphQL, and a numbered stream
published over REST through a fault while a WebSocket client reads it, resuming with ``since``."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson
import websockets
from gql import Client, GraphQLRequest
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.websockets import WebsocketsTransport

from tests.cluster.helpers import until
from tests.helpers.chat import connect, frame_where, send
from tests.helpers.servers import Herald
from tests.helpers.topologies import ClusterTopology

WAIT_S = 30.0
CHAT = "subscription C($room: String!) { chatMessage(room: $room) { id text } }"
SEND = "mutation S($room: String!, $text: String!) { sendMessage(room: $room, text: $text) { id text } }"


async def presence_and_graphql_cross_replicas(a: Herald, b: Herald) -> None:
    """Join/leave and presence across replicas (the join is an ephemeral publish), and a GraphQL
    subscription on ``a`` that receives what a mutation on ``b`` sent."""
    room = f"p{uuid.uuid4().hex[:8]}"
    alice, _ = await connect(a.ws, room, user="alice")
    await send(alice, {"type": "ping"})
    await frame_where(alice, lambda f: f["type"] == "pong")  # alice's presence is recorded
    bob, _ = await connect(b.ws, room, user="bob")
    joined = await frame_where(alice, lambda f: f["type"] in ("join", "leave"))
    assert (joined["type"], joined["user"]) == ("join", "bob")
    await send(bob, {"type": "presence"})
    assert (await frame_where(bob, lambda f: f["type"] == "presence"))["users"] == ["alice", "bob"]

    transport = WebsocketsTransport(url=f"{a.ws}/graphql", subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    async with Client(transport=transport) as on_a:
        results = on_a.subscribe(GraphQLRequest(CHAT, variable_values={"room": room}))
        first = asyncio.ensure_future(anext(results))
        sent: list[str] = []
        async with Client(transport=AIOHTTPTransport(url=f"{b.http}/graphql")) as http_b:
            async with asyncio.timeout(WAIT_S):
                while not first.done():  # until the subscription is live on A, B's mutations may precede it
                    request = GraphQLRequest(SEND, variable_values={"room": room, "text": f"hi {len(sent)}"})
                    sent.append((await http_b.execute(request))["sendMessage"]["id"])
                    await asyncio.wait({first}, timeout=0.2)
        assert (await first)["chatMessage"]["id"] in sent
        await results.aclose()  # complete the subscription: else the client's close waits for it (10 s)
    await alice.close()
    await bob.close()


async def two_replicas(factory: Callable[..., Herald], url: str, *ids: str, **env: str) -> tuple[Herald, Herald]:
    """Two ``herald serve`` replicas on ``url``, started side by side (each start costs seconds)."""
    names = ids or (None, None)
    a, b = await asyncio.gather(*(asyncio.to_thread(factory, url, name, **env) for name in names))
    return a, b


async def numbers_until(ws: websockets.ClientConnection, last: int) -> list[int]:
    """The numbers of the message frames ``ws`` got, up to and including ``last``."""
    got: list[int] = []
    while not got or got[-1] != last:
        frame = await frame_where(ws, lambda f: f["type"] == "message", within=WAIT_S)
        got.append(int(frame["text"]))
    return got


def pubsub_connections(cluster: ClusterTopology, port: int) -> dict[str, int]:
    """CLIENT LIST on one node: client name -> connections holding sharded subscriptions."""
    counts: dict[str, int] = {}
    for client in cluster.client(port).client_list():
        if int(client.get("ssub", 0)) > 0:
            counts[client["name"]] = counts.get(client["name"], 0) + 1
    return counts


@dataclass
class Figures:
    acknowledged: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=lambda: {"unavailable": 0, "not confirmed": 0, "unknown": 0})
    #: seconds from the fault to the first publish acknowledged after it
    flowing_again_s: float = 0.0
    resumes: int = 0

    @property
    def lost(self) -> list[int]:
        return sorted(set(self.acknowledged) - set(self.received))

    @property
    def duplicated(self) -> int:
        return len(self.received) - len(set(self.received))

    def line(self, what: str) -> str:
        return (
            f"{what}: acknowledged {len(self.acknowledged)}, delivered {len(self.received)}, "
            f"lost {len(self.lost)}, duplicated {self.duplicated}, refused {self.refused}, "
            f"client resumed with since {self.resumes}x, publishes acknowledged again "
            f"{self.flowing_again_s:.2f} s after the fault"
        )


class Reader:
    """A chat client that reads ``room`` and, whenever its socket ends or it is told to, reconnects to
    the other replica with ``since`` = the last offset it got."""

    def __init__(self, replicas: list[Herald], room: str, figures: Figures) -> None:
        self._replicas = replicas
        self._room = room
        self._figures = figures
        self._since: str | None = None
        self.hop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ws, welcome = await connect(self._replicas[0].ws, self._room)
        self._since = welcome["offset"] or "0"
        self._task = asyncio.create_task(self._run(ws))

    async def _run(self, ws: websockets.ClientConnection) -> None:
        turn = 0
        try:
            while True:
                with contextlib.suppress(websockets.ConnectionClosed, TimeoutError, OSError):
                    await self._read(ws)
                await ws.close()
                turn += 1
                ws = await self._resume(self._replicas[turn % len(self._replicas)])
        finally:
            await ws.close()

    async def _read(self, ws: websockets.ClientConnection) -> None:
        while True:
            hop = asyncio.ensure_future(self.hop.wait())
            recv = asyncio.ensure_future(ws.recv())
            try:
                done, _ = await asyncio.wait({hop, recv}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                hop.cancel()
                recv.cancel()
            if recv in done:  # (cancelling recv() loses nothing: the next one returns that frame)
                frame = orjson.loads(recv.result())
                if frame["type"] == "message":
                    self._figures.received.append(int(frame["text"]))
                    self._since = frame["id"]
            if hop in done:
                self.hop.clear()
                return

    async def _resume(self, herald: Herald) -> websockets.ClientConnection:
        async with asyncio.timeout(WAIT_S):
            while True:
                try:
                    ws, welcome = await connect(herald.ws, self._room, since=self._since or "0")
                except (OSError, websockets.WebSocketException, AssertionError, TimeoutError):
                    await asyncio.sleep(0.1)
                    continue
                assert welcome["recovered"] is True, welcome
                self._figures.resumes += 1
                return ws

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def numbered_stream_through(
    room: str,
    fault: Callable[[], object],
    publish_to: Herald,
    reader_on: list[Herald],
    before: int = 20,
    after: int = 30,
) -> Figures:
    """Publish 0, 1, 2... over REST to ``publish_to``, one at a time; start ``fault()`` (in a thread,
    publishing goes on meanwhile) once ``before`` are acknowledged, and the reader hops to another replica
    with ``since`` right then; stop once ``after`` more were acknowledged after the fault and the fault is
    over; return once every acknowledged number was read (or ``WAIT_S``)."""
    figures = Figures()
    reader = Reader(reader_on, room, figures)
    await reader.start()
    faulted_at = 0.0
    fault_done: asyncio.Future[object] | None = None
    n = 0
    url = f"{publish_to.http}/api/chat/{room}/messages"
    async with httpx.AsyncClient(timeout=10) as client:
        async with asyncio.timeout(3 * WAIT_S):
            while len(figures.acknowledged) < before + after or fault_done is None or not fault_done.done():
                if fault_done is None and len(figures.acknowledged) == before:
                    fault_done = asyncio.ensure_future(asyncio.to_thread(fault))
                    faulted_at = time.monotonic()
                    reader.hop.set()
                response = await client.post(url, json={"text": str(n)})
                if response.status_code == 202:
                    figures.acknowledged.append(n)
                    if faulted_at and not figures.flowing_again_s:
                        figures.flowing_again_s = time.monotonic() - faulted_at
                else:
                    assert response.status_code == 503, response.text
                    detail = response.json()["detail"]
                    kind = "not confirmed" if "not confirmed" in detail else "unknown" if "unknown" in detail else None
                    figures.refused[kind or "unavailable"] += 1
                    await asyncio.sleep(0.02)
                n += 1
                await asyncio.sleep(0.005)
    assert fault_done is not None
    await fault_done  # re-raise what went wrong with the fault itself
    with contextlib.suppress(AssertionError):  # what is still missing then is what the caller reports lost
        await until(lambda: not figures.lost, WAIT_S, "every acknowledged number delivered")
    await reader.stop()
    return figures
