"""Issue 12 (SPEC §8): the limits Herald's uvicorn protocol classes keep (api.serving, api.ws.fastpath), on the
server ``herald serve`` runs, in-process (tests/helpers/inprocess.py): half-open connections closed after
``HERALD_HANDSHAKE_TIMEOUT_S`` (408 when a request was begun), oversize heads answered 431 and closed, never
silence, a ping flood from a client that never reads closed 1013 with memory bounded. The replica's
descriptors and memory are this process's: measured before and after, reported as test properties, bounded
by assertions with a wide margin (no timing target is asserted). Body limits: tests/e2e/test_hardening_limits.py."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.errors import CloseCode
from tests.helpers.chat import masked_frame, metric, raw_handshake, read_until_closed, rss_kib, wait_until
from tests.helpers.inprocess import InProcessReplica

MIB = 1024 * 1024
HANDSHAKE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def herald() -> Iterator[InProcessReplica]:
    with InProcessReplica(replica_id="heads", handshake_timeout_s=HANDSHAKE_TIMEOUT_S) as replica:
        yield replica


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def healthy(herald: InProcessReplica) -> bool:
    return httpx.get(f"{herald.http}/health", timeout=5).status_code == 200


def _key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


#: what a slowloris sends, then nothing more
HALF_OPEN = {
    "nothing": b"",
    "partial-head": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
    "partial-websocket-handshake": (
        f"GET /ws/chat/lobby HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {_key()}\r\n"
    ).encode(),
    "pipelined-partial-body": (
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /api/books HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    ),
    "partial-body": (
        b'POST /api/books HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"is'
    ),
}


def test_half_open_connections_are_closed_after_the_handshake_timeout(
    herald: InProcessReplica, request: pytest.FixtureRequest
) -> None:
    baseline = open_fds()
    sockets: list[tuple[str, socket.socket]] = []
    for kind, sent in HALF_OPEN.items():
        for _ in range(25):
            sock = socket.create_connection(("127.0.0.1", herald.port), timeout=5)
            if sent:
                sock.sendall(sent)
            sockets.append((kind, sock))
    # the replica's ends of the connections are descriptors of this process too, beside the clients' ends
    clients = len(sockets)
    wait_until(lambda: open_fds() >= baseline + clients + 110, 5, "the replica to hold the connections")
    held = open_fds() - baseline - clients
    started = time.monotonic()
    answers = {kind: read_until_closed(sock, 10 * HANDSHAKE_TIMEOUT_S) for kind, sock in sockets}
    closed_after = time.monotonic() - started
    for _, sock in sockets:
        sock.close()
    wait_until(lambda: open_fds() <= baseline + 2, 5, "the replica to release their descriptors")
    assert answers["nothing"] == b""  # nothing asked, nothing answered: just closed
    for kind in ("partial-head", "partial-websocket-handshake", "partial-body"):
        assert answers[kind].startswith(b"HTTP/1.1 408 "), (kind, answers[kind][:60])
    pipelined = answers["pipelined-partial-body"]
    assert pipelined.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in pipelined
    request.node.user_properties.append(("half_open_fds_held", held))
    request.node.user_properties.append(("half_open_all_closed_within_s", round(closed_after, 2)))
    assert healthy(herald)


def test_a_slow_but_complete_request_is_served(herald: InProcessReplica) -> None:
    """The timeout is for requests that never complete, not for keep-alive connections that idle between them."""
    with httpx.Client(timeout=5) as client:
        assert client.get(f"{herald.http}/health").status_code == 200
        assert client.get(f"{herald.http}/health").status_code == 200


# -- 13. oversize request heads ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "websocket", "header_bytes"),
    [
        pytest.param("/health", False, 100_000, id="http-100KB-header"),
        pytest.param("/health", False, 20 * MIB, id="http-20MB-header"),
        pytest.param("/ws/chat/lobby", True, 9_000, id="websocket-9KB-cookie"),
        pytest.param("/ws/chat/lobby?token=" + "a" * 9_000, True, 0, id="websocket-9KB-token"),
    ],
)
def test_an_oversize_head_gets_431_and_a_close(
    herald: InProcessReplica, path: str, websocket: bool, header_bytes: int
) -> None:
    answer = _send_head(herald, path, websocket, header_bytes)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert healthy(herald)


def _send_head(herald: InProcessReplica, path: str, websocket: bool, header_bytes: int) -> bytes:
    upgrade = (
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {_key()}\r\nSec-WebSocket-Version: 13\r\n"
        if websocket
        else ""
    )
    big = f"Cookie: c={'a' * header_bytes}\r\n" if header_bytes else ""
    with socket.create_connection(("127.0.0.1", herald.port), timeout=5) as sock:
        try:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{upgrade}{big}\r\n".encode())
        except OSError:
            pass  # refused mid-head: the answer was sent first, read it below
        return read_until_closed(sock, 10) if not websocket or header_bytes or "token" in path else b""


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header_bytes=st.integers(min_value=1, max_value=150_000), websocket=st.booleans())
def test_any_head_size_gets_an_answer_never_silence(
    herald: InProcessReplica, header_bytes: int, websocket: bool
) -> None:
    path = "/ws/chat/lobby" if websocket else "/health"
    with socket.create_connection(("127.0.0.1", herald.port), timeout=5) as sock:
        upgrade = (
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {_key()}\r\nSec-WebSocket-Version: 13\r\n"
            if websocket
            else "Connection: close\r\n"
        )
        try:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{upgrade}Cookie: c={'a' * header_bytes}\r\n\r\n".encode())
        except OSError:
            pass
        sock.settimeout(5)
        status_line = sock.recv(64).split(b"\r\n")[0]
    if websocket:
        expected = b"HTTP/1.1 101 " if header_bytes + 11 <= 8192 else b"HTTP/1.1 431 "
    else:
        expected = b"HTTP/1.1 200 " if header_bytes < 60_000 else b"HTTP/1.1 431 "
    if 60_000 <= header_bytes <= 66_000 and not websocket:  # near the 64 KiB head limit either answer is right
        assert status_line[:13] in (b"HTTP/1.1 200 ", b"HTTP/1.1 431 ")
    else:
        assert status_line.startswith(expected), (header_bytes, status_line)


# -- 9. a ping flood from a client that never reads ------------------------------------------------------------


def _close_code(stream: bytes) -> int | None:
    """The code of the close frame in a stream of unmasked server frames (None when there is none)."""
    at = 0
    while at + 2 <= len(stream):
        opcode, size = stream[at] & 0x0F, stream[at + 1] & 0x7F
        head = 2
        if size == 126:
            size, head = struct.unpack("!H", stream[at + 2 : at + 4])[0], 4
        elif size == 127:
            size, head = struct.unpack("!Q", stream[at + 2 : at + 10])[0], 10
        if opcode == 0x8:
            code: int = struct.unpack("!H", stream[at + head : at + head + 2])[0]
            return code
        at += head + size
    return None


def test_a_ping_flood_that_never_reads_is_closed_1013(herald: InProcessReplica, request: pytest.FixtureRequest) -> None:
    room = f"r{uuid.uuid4().hex[:6]}"
    before = rss_kib(os.getpid())
    sock = raw_handshake(herald.port, f"/ws/chat/{room}", receive_buffer=4096)
    pings = masked_frame(0x9, b"p" * 125) * 500
    sock.settimeout(0.5)
    sent = peak = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            sock.sendall(pings)
        except (TimeoutError, OSError):
            break  # the replica stopped reading us
        sent += 500
        peak = max(peak, rss_kib(os.getpid()))
    peak = max(peak, rss_kib(os.getpid()))
    grown_mib = (peak - before) / 1024
    request.node.user_properties.append(("ping_flood_pings_sent", sent))
    request.node.user_properties.append(("ping_flood_rss_growth_mib", round(grown_mib, 1)))
    assert time.monotonic() < deadline, f"still reading pings after 20 s ({sent} sent)"
    assert grown_mib < 32, f"RSS grew {grown_mib:.1f} MiB under a ping flood"
    # Reading again, the client finds its backlog of pongs, then the 1013 close frame.
    stream = read_until_closed(sock, 30)
    sock.close()
    assert _close_code(stream) == CloseCode.TRY_AGAIN_LATER
    wait_until(lambda: metric(herald.http, "herald_connections", 'endpoint="chat"') == 0, 10, "the socket released")
    assert healthy(herald)
