"""A loopback TCP proxy that can make its open connections go silent: a stuck link, on demand.

Redis behind a proxy that failed over, a NAT entry that expired, a half-dead
peer: the connection stays open and nothing comes through. ``freeze()`` does
that to every connection open now; connections opened later flow normally.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.helpers.services import free_port

CHUNK = 65536


class FreezableProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._frozen: list[asyncio.Event] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> FreezableProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    def freeze(self) -> None:
        """Every connection open now stops carrying bytes, both ways, and stays open."""
        for frozen in self._frozen:
            frozen.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        frozen = asyncio.Event()
        self._frozen.append(frozen)
        for reader, writer in ((client_reader, upstream_writer), (upstream_reader, client_writer)):
            pump = asyncio.create_task(self._pump(reader, writer, frozen))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frozen: asyncio.Event) -> None:
        try:
            while data := await reader.read(CHUNK):
                if frozen.is_set():
                    await asyncio.Event().wait()  # stuck: hold the bytes and the connection, forever
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
