"""Raw baseline: one picows process, a dict of rooms, each message encoded once and written to every socket.

This is the ceiling for a Python broadcaster on this machine: no Redis hop, no framework, no per-socket
queue. ``python -m benchmarks.baseline_picows --port P`` serves ``/ws/chat/{room}?user=U`` with the chat
frames of SPEC §4 that the bench uses (welcome, message).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server


class Rooms:
    def __init__(self) -> None:
        self.members: dict[str, set[WSTransport]] = {}
        self.counter = 0

    def join(self, room: str, transport: WSTransport) -> None:
        self.members.setdefault(room, set()).add(transport)

    def leave(self, room: str, transport: WSTransport) -> None:
        members = self.members.get(room)
        if members is not None:
            members.discard(transport)
            if not members:
                del self.members[room]

    def broadcast(self, room: str, user: str, text: str) -> None:
        self.counter += 1
        frame = orjson.dumps(
            {"type": "message", "id": f"0-{self.counter}", "room": room, "user": user, "text": text, "ts": time.time()}
        )
        for transport in self.members.get(room, ()):
            transport.send(WSMsgType.TEXT, frame)


class ChatListener(WSListener):
    def __init__(self, rooms: Rooms, room: str, user: str) -> None:
        self.rooms = rooms
        self.room = room
        self.user = user

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.rooms.join(self.room, transport)
        welcome = {"type": "welcome", "room": self.room, "user": self.user, "replica": "raw", "offset": None}
        transport.send(WSMsgType.TEXT, orjson.dumps(welcome))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            try:
                data = orjson.loads(frame.get_payload_as_bytes())
            except orjson.JSONDecodeError:
                data = None
            if isinstance(data, dict) and data.get("type") == "message" and isinstance(data.get("text"), str):
                self.rooms.broadcast(self.room, self.user, data["text"])
            else:
                error = {"type": "error", "code": "bad_request", "detail": "expected a message frame"}
                transport.send(WSMsgType.TEXT, orjson.dumps(error))
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.rooms.leave(self.room, transport)


def listener_factory(rooms: Rooms, request: WSUpgradeRequest) -> ChatListener | None:
    url = urlsplit(request.path.decode("latin-1"))
    if not url.path.startswith("/ws/chat/"):
        return None  # picows answers 404
    room = unquote(url.path.removeprefix("/ws/chat/"))
    user = parse_qs(url.query).get("user", ["anonymous"])[0]
    return ChatListener(rooms, room, user)


async def serve(host: str, port: int) -> None:
    rooms = Rooms()
    server = await ws_create_server(lambda request: listener_factory(rooms, request), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
