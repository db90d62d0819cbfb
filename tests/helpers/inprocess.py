"""``herald serve`` without the process: the server it runs (``api.serving.replica``: Herald's uvicorn protocols,
the prepared-frame writer, the handshake timeout, the head limit, the shutdown drain) in a thread of the test
process, on its own event loop (uvloop, as served).

In-process, so coverage sees the protocol classes (the ``herald serve`` processes of tests/e2e are not traced:
tracing would slow the very servers whose timing those tests depend on). The face is ``servers.Herald``'s
(``port``, ``http``, ``ws``), so a test written against a replica reads the same; what needs a process
(signals, its file descriptors or memory, a kill) stays in tests/e2e.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn

from api.cli import listen
from api.serving import replica
from api.settings import Settings
from tests.helpers.services import Served

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


class InProcessReplica(Served):
    def __init__(self, **settings: Any) -> None:
        values: dict[str, Any] = {"redis_url": "memory://", "replica_id": "in-process", **settings}
        self._listener: socket.socket = listen("127.0.0.1", 0)
        self.port: int = self._listener.getsockname()[1]
        self.settings = Settings(**values, host="127.0.0.1", port=self.port)
        self.server: uvicorn.Server = replica(self.settings)
        self._thread: threading.Thread | None = None

    def start(self) -> InProcessReplica:
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._listener]}, name=f"replica-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the in-process replica stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the in-process replica did not start within {START_TIMEOUT_S} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """What SIGTERM asks of ``herald serve``: sockets closed 1012, streams drained, the lifespan shut down."""
        thread = self._thread  # stop() may be called again (from another thread) while it runs: harmless
        if thread is not None:
            self.server.should_exit = True
            thread.join(STOP_TIMEOUT_S)
            if thread.is_alive():
                raise RuntimeError(f"the in-process replica did not stop within {STOP_TIMEOUT_S} s")
            self._thread = None
        self._listener.close()

    def __enter__(self) -> InProcessReplica:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # From a test's event loop: starting and stopping wait on the replica's thread, never block the test's loop
    async def __aenter__(self) -> InProcessReplica:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)
