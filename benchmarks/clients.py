"""One load-generator socket: what it counts per frame, and the two client libraries that can carry it.

``Conn.on_text`` is the hot path (every delivery of every workload passes through it), so it finds the
bench marker with one regex over the raw bytes and keeps per-publisher sequence state instead of sets of
everything seen: in-order delivery costs one comparison, gaps and duplicates are still exact.
"""

from __future__ import annotations

import asyncio
import re
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from benchmarks.wire import MARK, WARM_PUBID, gql_init_frame, gql_subscribe_frame

if TYPE_CHECKING:
    from benchmarks.loadgen import Worker

_search = MARK.search
_offset = re.compile(rb'"(?:id|offset)":"([0-9]+-[0-9]+)"').search
_now = time.monotonic_ns
GQL_PROTOCOL = "graphql-transport-ws"
_ROUTINE = (b'"heartbeat"', b'"join"', b'"leave"', b'"pong"')  # frames that are no sign of trouble


@dataclass
class ConnSpec:
    url: str
    room: str
    subscriber: bool  # its deliveries are counted and checked for loss and duplicates
    leader: bool = False  # opened before the others of its (replica, room), see loadgen.Worker.connect
    graphql: bool = False  # a graphql-transport-ws chatMessage subscriber instead of a chat socket
    acks: bool = False  # its receipt of a closed-loop message frees a slot in the publisher's window
    failover: str | None = None  # W7: once dropped, reconnect here with since=<last offset seen>


class Conn:
    def __init__(self, worker: Worker, spec: ConnSpec) -> None:
        self.worker = worker
        self.spec = spec
        self.room = spec.room
        self.send: Callable[[bytes], None] = _not_open
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.open = False
        self.dropped = False  # closed by the server (or the network) before the bench closed it
        self.warmed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.uniq = 0
        self.dups = 0
        self.streams: dict[bytes, list[int]] = {}
        self.missing: dict[bytes, set[int]] = {}
        self.lat: array[int] = array("q")
        self.close: Callable[[], None] = lambda: None
        self.last_offset: bytes | None = None  # W7: where to resume (the newest message or welcome offset seen)
        self.resumed_ns = 0  # W7: when the welcome of its resumed connection arrived
        self.resumed_gap = False  # W7: that welcome said recovered: false

    def on_open(self) -> None:
        self.open = True
        if self.spec.graphql:
            self.send(gql_init_frame())

    def on_closed(self) -> None:
        if self.open and not self.worker.closing:
            self.dropped = True
            if self.spec.failover is not None:
                self.worker.resume_elsewhere(self)
        self.open = False
        if not self.ready.done():
            reason = f"closed before welcome ({self.close_code} {self.close_reason!r})"
            self.ready.set_exception(ConnectionError(reason))

    def on_text(self, payload: bytes) -> None:
        worker = self.worker
        worker.frames += 1
        m = _search(payload)
        if m is None:
            self._on_control(payload)
            return
        if self.spec.failover is not None:
            found = _offset(payload)
            if found is not None:
                self.last_offset = found.group(1)
        pub = m.group(1)
        if pub == WARM_PUBID:
            self.warmed = True
            return
        seq = int(m.group(2))
        if self.spec.acks and worker.outstanding:
            publisher = worker.outstanding.pop((pub, seq), None)
            if publisher is not None:
                publisher.on_ack()
        if not self.spec.subscriber:
            return
        stream = self.streams.get(pub)
        if stream is None:
            stream = self.streams[pub] = [0]
        expected = stream[0]
        if seq == expected:
            stream[0] = seq + 1
            self.uniq += 1
        elif seq > expected:
            self.missing.setdefault(pub, set()).update(range(expected, seq))
            stream[0] = seq + 1
            self.uniq += 1
        elif seq in self.missing.get(pub, ()):
            self.missing[pub].discard(seq)
            self.uniq += 1
        else:
            self.dups += 1
        if not seq & worker.lat_mask:
            self.lat.append((_now() - int(m.group(3))) // 1000)

    def _on_control(self, payload: bytes) -> None:
        """Welcome, join/leave, heartbeats and GraphQL protocol frames."""
        if self.spec.graphql:
            if b'"connection_ack"' in payload:
                self.send(gql_subscribe_frame("1", self.room))
                self._set_ready()
                return
            if b'"ping"' in payload:
                self.send(b'{"type":"pong"}')
                return
        elif not self.ready.done():
            self._set_ready()  # the welcome frame
            if self.spec.failover is not None and (found := _offset(payload)) is not None:
                self.last_offset = found.group(1)
            return
        elif self.spec.failover is not None and b'"welcome"' in payload:  # W7: resumed on the other replica
            self.resumed_ns = _now()
            self.resumed_gap = b'"recovered":false' in payload
            return
        if len(self.worker.unexpected) < 5 and not any(kind in payload for kind in _ROUTINE):
            self.worker.unexpected.append(payload[:300].decode(errors="replace"))

    def _set_ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)


def _not_open(data: bytes) -> None:
    raise ConnectionError("socket is not open")


class _PicowsListener(WSListener):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def on_ws_connected(self, transport: WSTransport) -> None:
        text = WSMsgType.TEXT
        send = transport.send
        self.conn.send = lambda data: send(text, data)
        self.conn.close = lambda: _close_picows(transport)
        self.conn.on_open()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.conn.on_text(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            code: Any = frame.get_close_code()  # picows' enum, or a plain int for codes outside it
            self.conn.close_code = int(getattr(code, "value", code))
            self.conn.close_reason = frame.get_close_message().decode(errors="replace")
            transport.send_close(code)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.on_closed()


def _close_picows(transport: WSTransport) -> None:
    transport.send_close(WSCloseCode.OK)  # a clean close: the server sees a client leaving, not a network error
    transport.disconnect()


async def open_picows(conn: Conn) -> None:
    headers = {"Sec-WebSocket-Protocol": GQL_PROTOCOL} if conn.spec.graphql else None
    await ws_connect(
        lambda: _PicowsListener(conn), conn.spec.url, extra_headers=headers, websocket_handshake_timeout=20
    )


async def open_websockets(conn: Conn) -> None:
    """The same socket on the `websockets` asyncio client (compression off, as picows has none)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
    from websockets.typing import Subprotocol

    protocols = [Subprotocol(GQL_PROTOCOL)] if conn.spec.graphql else None
    ws = await connect(
        conn.spec.url, subprotocols=protocols, compression=None, ping_interval=None, max_size=None, open_timeout=20
    )
    loop = asyncio.get_running_loop()
    conn.send = lambda data: _detach(loop.create_task(ws.send(data, text=True)))
    conn.close = lambda: _detach(loop.create_task(ws.close()))
    conn.on_open()

    async def read() -> None:
        try:
            while True:
                conn.on_text(await ws.recv(decode=False))
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                conn.close_code, conn.close_reason = exc.rcvd.code, exc.rcvd.reason
        finally:
            conn.on_closed()

    _detach(loop.create_task(read()))


_tasks: set[asyncio.Task[None]] = set()


def _detach(task: asyncio.Task[None]) -> None:
    _tasks.add(task)  # keep a reference until done, as asyncio requires
    task.add_done_callback(_tasks.discard)


OPENERS = {"picows": open_picows, "websockets": open_websockets}
