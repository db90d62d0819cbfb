"""Client-side helpers for tests against real ``herald serve`` replicas.

Every wait is bounded: helpers take a time limit (``timeout`` / ``within``)
and fail the test when it runs out instead of hanging.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import select
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

Frame = dict[str, Any]


def metric(base_url: str, name: str, labels: str = "") -> float:
    """One sample of ``GET /metrics``, e.g. ``metric(url, "herald_connections", 'endpoint="chat"')``."""
    return _sample(httpx.get(f"{base_url}/metrics", timeout=5).text, name, labels)


async def ametric(base_url: str, name: str, labels: str = "") -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{base_url}/metrics")).text
    return _sample(text, name, labels)


async def until_metric(base_url: str, name: str, value: float, within: float, labels: str = "") -> None:
    """Poll ``/metrics`` until the sample reads ``value``; fails after ``within`` seconds."""

    async def reached() -> bool:
        return await ametric(base_url, name, labels) == value

    await eventually(reached, within, f"{name}{{{labels}}} == {value}", interval=0.02)


def _sample(text: str, name: str, labels: str) -> float:
    """The sum of the samples of ``name`` (``name{a="b"}`` works too) whose labels include ``labels``,
    as a PromQL selector's sum: ``herald_connections{endpoint="chat"}`` counts every transport."""
    if "{" in name:
        name, _, inline = name.partition("{")
        labels = ",".join(part for part in (inline.rstrip("}"), labels) if part)
    wanted = set(re.findall(r'(\w+)="([^"]*)"', labels))
    matching = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and wanted <= set(sample.labels.items())
    ]
    assert matching, f"{name}{{{labels}}} not in /metrics"
    return float(sum(matching))


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll ``check`` until true; returns the seconds it took, fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.05) -> float:
    """``wait_until`` for an async check."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - started


async def astatus(url: str) -> int:
    """The status of ``GET url``; 0 when nothing answers."""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code
    except httpx.HTTPError:
        return 0


async def connect(base_ws: str, room: str, **query: str) -> tuple[ClientConnection, Frame]:
    """Open ``/ws/chat/{room}`` and read its welcome frame."""
    ws = await websockets.connect(_chat_url(base_ws, room, query), max_size=None, open_timeout=5)
    welcome = await next_frame(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


def _chat_url(base_ws: str, room: str, query: dict[str, str]) -> str:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return f"{base_ws}/ws/chat/{room}" + (f"?{params}" if params else "")


async def next_frame(ws: ClientConnection, within: float = 5.0) -> Frame:
    frame: Frame = orjson.loads(await asyncio.wait_for(ws.recv(), within))
    return frame


async def frame_where(ws: ClientConnection, check: Callable[[Frame], bool], within: float = 5.0) -> Frame:
    """The first frame ``check`` accepts, skipping others (heartbeats, join/leave...)."""
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no matching frame in time")
        frame = await next_frame(ws, remaining)
        if check(frame):
            return frame


async def close_code(ws: ClientConnection, within: float = 5.0) -> int | None:
    """Read until the server closes the socket; its close code."""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
    except websockets.ConnectionClosed:
        return ws.close_code
    raise AssertionError("the server did not close the socket in time")


async def send(ws: ClientConnection, frame: Frame) -> None:
    await ws.send(orjson.dumps(frame).decode())


def is_message(frame: Frame) -> bool:
    return bool(frame["type"] == "message")


async def say(ws: ClientConnection, text: str) -> None:
    await send(ws, {"type": "message", "text": text})


async def messages_until(ws: ClientConnection, last_text: str, within: float = 10.0) -> list[Frame]:
    """Every message frame up to and including the one whose text is ``last_text``."""

    async def collect() -> list[Frame]:
        frames: list[Frame] = []
        while not frames or frames[-1]["text"] != last_text:
            frames.append(await frame_where(ws, is_message))
        return frames

    return await asyncio.wait_for(collect(), within)


def raw_handshake(
    port: int, path: str, receive_buffer: int | None = 4096, subprotocol: str | None = None
) -> socket.socket:
    """A WebSocket opened by hand on a plain socket, which the test may then never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        # Before connect, so the window stays small: the server's buffers fill fast.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    protocol = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "connection closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One client frame (FIN set, masked as RFC 6455 requires of clients)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status_file:
        for line in status_file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def post_message(herald_http: str, room: str, text: str) -> str:
    """Publish over HTTP; returns the offset."""
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(f"{herald_http}/api/chat/{room}/messages", json={"text": text})
    assert response.status_code == 202, response.text
    offset: str = response.json()["id"]
    return offset


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it does not within ``within``."""
    received = b""
    deadline = time.monotonic() + within
    sock.setblocking(False)
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.1)
        if not readable:
            continue
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BlockingIOError):
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server did not close the connection within {within} s (got {received[:80]!r})")
