"""A loopback TCP load balancer for client tests: failover, and links that fail on demand.

Each new connection goes to the first upstream that accepts it, like a load balancer
whose health check took a draining replica out. ``mute_replies()`` makes the open
connections drop what the server sends (a request lands, its answer never comes back);
``cut()`` aborts every open connection (a network failure: no close frame).
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.helpers.services import free_port

CHUNK = 65536


class FailoverProxy:
    def __init__(self, upstreams: list[int]) -> None:
        self.upstreams = upstreams
        self.port = free_port()
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._muted: list[asyncio.Event] = []
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FailoverProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)
        return self

    def mute_replies(self) -> None:
        """Connections open now keep carrying client bytes but drop every server byte."""
        for muted in self._muted:
            muted.set()

    def cut(self) -> None:
        """Abort every open connection, both sides."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._muted.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        for port in self.upstreams:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            client_writer.transport.abort()
            return
        self.accepted += 1
        muted = asyncio.Event()
        self._muted.append(muted)
        self._writers.update((client_writer, upstream_writer))
        for reader, writer, drop in (
            (client_reader, upstream_writer, None),
            (upstream_reader, client_writer, muted),
        ):
            pump = asyncio.create_task(self._pump(reader, writer, drop))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, drop: asyncio.Event | None
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                if drop is not None and drop.is_set():
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
