"""The peer: FastAPI + encode/broadcaster on Redis, the pattern FastAPI's WebSocket docs point to.

Each socket runs broadcaster's README loop: a receiver task publishes what the client sends, and
``async with broadcast.subscribe(channel)`` feeds ``await websocket.send_text`` for every event. The
message frame is encoded once by the publishing replica. Run by uvicorn with its default settings::

    PEER_REDIS_URL=redis://127.0.0.1:6379 PEER_REPLICA_ID=b1 uvicorn benchmarks.peer_broadcaster:app --port P
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import orjson
from broadcaster import Broadcast
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

broadcast = Broadcast(os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379"))
REPLICA = os.environ.get("PEER_REPLICA_ID", "peer")
_ids = itertools.count(1)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await broadcast.connect()
    try:
        async with AsyncExitStack() as keepalive:
            # broadcaster 0.3.1's Redis listener starts `listen()` when the first SUBSCRIBE is sent but before it
            # returns, sees no channel, and then sleeps until some *other* channel is subscribed: a replica whose
            # clients all use one room never receives anything. Two held subscriptions keep the listener running.
            for name in ("peer-keepalive-1", "peer-keepalive-2"):
                await keepalive.enter_async_context(broadcast.subscribe(channel=name))
            yield
    finally:
        await broadcast.disconnect()


app = FastAPI(lifespan=lifespan)


async def _receive(websocket: WebSocket, channel: str, room: str, user: str) -> None:
    async for raw in websocket.iter_text():
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict) and data.get("type") == "message" and isinstance(data.get("text"), str):
            message = {
                "type": "message",
                "id": f"{REPLICA}-{next(_ids)}",
                "room": room,
                "user": user,
                "text": data["text"],
                "ts": time.time(),
            }
            await broadcast.publish(channel=channel, message=orjson.dumps(message).decode())
        else:
            await websocket.send_text('{"type":"error","code":"bad_request","detail":"expected a message frame"}')


@app.websocket("/ws/chat/{room}")
async def chat(websocket: WebSocket, room: str, user: str = "anonymous") -> None:
    await websocket.accept()
    channel = f"chat:{room}"
    try:
        async with broadcast.subscribe(channel=channel) as subscriber:
            welcome = {"type": "welcome", "room": room, "user": user, "replica": REPLICA, "offset": None}
            await websocket.send_text(orjson.dumps(welcome).decode())
            async with anyio.create_task_group() as tasks:

                async def receiver() -> None:
                    await _receive(websocket, channel, room, user)
                    tasks.cancel_scope.cancel()

                tasks.start_soon(receiver)
                async for event in subscriber:  # type: ignore[union-attr]
                    if event is not None:  # broadcaster types its iterator loosely; it never yields None
                        await websocket.send_text(event.message)
    except* (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away while we were sending
