"""The replica's open SSE streams: counted toward ``HERALD_MAX_CONNECTIONS``, ended together on SIGTERM."""

from __future__ import annotations

from api.errors import CLOSE_CODE_EXPLANATIONS, CloseCode
from api.sse.stream import EventStream

ENDPOINTS = ("chat", "graphql")


class SseStreams:
    def __init__(self) -> None:
        self._open: dict[str, set[EventStream]] = {name: set() for name in ENDPOINTS}
        #: the replica is shutting down: streams that open from now on end at once
        self.draining = False

    def total(self) -> int:
        return sum(len(group) for group in self._open.values())

    def count(self, endpoint: str) -> int:
        return len(self._open[endpoint])

    def add(self, stream: EventStream) -> None:
        self._open[stream.endpoint].add(stream)
        if self.draining:
            self._drain(stream)

    def discard(self, stream: EventStream) -> None:
        self._open[stream.endpoint].discard(stream)

    def drain(self) -> None:
        """SIGTERM: end every stream now (what was pushed still goes out), so its client resumes elsewhere.

        Without this uvicorn would wait for these requests until its graceful timeout and then cut them.
        """
        self.draining = True
        for group in self._open.values():
            for stream in tuple(group):
                self._drain(stream)

    @staticmethod
    def _drain(stream: EventStream) -> None:
        stream.end(CloseCode.SERVICE_RESTART, CLOSE_CODE_EXPLANATIONS[CloseCode.SERVICE_RESTART], flush=True)
