"""Herald's uvicorn protocol (api.ws.fastpath) as `herald serve` runs it, in-process (tests/helpers/inprocess.py)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from collections.abc import Iterator

import httpx
import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from api.errors import CloseCode
from tests.helpers.chat import masked_frame
from tests.helpers.inprocess import InProcessReplica

MAX_BYTES = 1024


class RawClient:
    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(4096)
        assert response.startswith(b"HTTP/1.1 101"), response
        self.reader = StreamReader()
        self.reader.feed_data(response.split(b"\r\n\r\n", 1)[1])

    def frames(self) -> Iterator[Frame]:
        """Server frames until the server closes (bounded by the socket timeout)."""
        while True:
            parser = Frame.parse(self.reader.read_exact, mask=False)
            try:
                while True:
                    next(parser)
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        return
                    self.reader.feed_data(chunk)
            except StopIteration as done:
                frame: Frame = done.value
                yield frame
                if frame.opcode is Opcode.CLOSE:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def herald() -> Iterator[InProcessReplica]:
    with InProcessReplica(max_message_bytes=MAX_BYTES) as replica:
        yield replica


def test_a_message_sent_together_with_an_oversize_frame_is_still_published(herald: InProcessReplica) -> None:
    client = RawClient(herald.port, "/ws/chat/lobby?user=ada")
    try:
        welcome = next(client.frames())
        good = masked_frame(0x1, json.dumps({"type": "message", "text": "before the big one"}).encode())
        client.sock.sendall(good + masked_frame(0x1, b"x" * (MAX_BYTES * 2)))
        frames = list(client.frames())
    finally:
        client.close()
    assert json.loads(welcome.data)["type"] == "welcome"
    close = frames[-1]
    assert close.opcode is Opcode.CLOSE
    assert struct.unpack("!H", close.data[:2])[0] == CloseCode.MESSAGE_TOO_BIG
    history = httpx.get(f"{herald.http}/api/chat/lobby/messages").json()
    assert [m["text"] for m in history] == ["before the big one"]


def test_direct_frames_arrive_after_the_welcome_and_replay_in_order(herald: InProcessReplica) -> None:
    import httpx

    for n in range(5):
        httpx.post(f"{herald.http}/api/chat/order/messages", json={"text": f"old {n}"}).raise_for_status()
    client = RawClient(herald.port, "/ws/chat/order?user=ada&since=0")
    try:
        for n in range(5):
            client.sock.sendall(masked_frame(0x1, json.dumps({"type": "message", "text": f"new {n}"}).encode()))
        received: list[dict[str, object]] = []
        for frame in client.frames():
            if frame.opcode is Opcode.TEXT:
                received.append(json.loads(frame.data))
                if received[-1].get("text") == "new 4":
                    break
    finally:
        client.close()
    assert received[0]["type"] == "welcome"
    texts = [f["text"] for f in received if f["type"] == "message"]
    assert texts == [f"old {n}" for n in range(5)] + [f"new {n}" for n in range(5)]


def test_replies_to_frames_sent_together_come_in_the_order_of_the_frames(herald: InProcessReplica) -> None:
    """Frames go straight to the chat machine (no ASGI receive per frame) and several publishes can be in
    flight at once, but a ``pong`` never overtakes the ``ack`` of a message sent before its ``ping``, and
    the messages are stored in the order they were sent."""
    client = RawClient(herald.port, "/ws/chat/replies?user=ada")
    sent = b""
    for n in range(20):
        sent += masked_frame(0x1, json.dumps({"type": "message", "text": f"m{n}", "key": f"k{n}"}).encode())
        sent += masked_frame(0x1, b'{"type":"ping"}')
    sent += masked_frame(0x1, b"not json")
    try:
        frames = client.frames()
        assert json.loads(next(frames).data)["type"] == "welcome"
        client.sock.sendall(sent)  # one write: the server reads them in one go
        replies: list[dict[str, object]] = []
        for frame in frames:
            reply = json.loads(frame.data)
            if reply["type"] in ("ack", "pong", "error"):
                replies.append(reply)
            if reply["type"] == "error":
                break
    finally:
        client.close()
    kinds = [(r["type"], r.get("key")) for r in replies]
    assert kinds == [kind for n in range(20) for kind in (("ack", f"k{n}"), ("pong", None))] + [("error", None)]
    history = httpx.get(f"{herald.http}/api/chat/replies/messages").json()
    assert [m["text"] for m in history] == [f"m{n}" for n in range(20)]
