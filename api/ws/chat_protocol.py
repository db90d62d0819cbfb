"""The chat protocol as a sans-I/O machine: a frame (or a tick) in, actions out.

It awaits nothing and touches no socket, so every rule of SPEC §4 is a plain
unit test: ``assert ChatProtocol(...).receive('nope') == [Send(error...)]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from api.errors import CloseCode, ErrorCode
from api.models import dumps, over_limit
from api.ws.actions import Close, Send

NOT_JSON = "仅支持JSON格式 (only JSON text frames are supported)"

#: longest idempotency key accepted, on every surface
MAX_KEY_CHARS = 128


# -- client -> server frames ----------------------------------------------------


class _MessageFrame(BaseModel):
    type: Literal["message"]
    text: str = Field(min_length=1)
    #: idempotency key (SPEC §8): a repeat publishes nothing and is acknowledged with the first offset
    key: str | None = Field(None, min_length=1, max_length=MAX_KEY_CHARS)


class _PingFrame(BaseModel):
    type: Literal["ping"]


class _PresenceFrame(BaseModel):
    type: Literal["presence"]


_ClientFrame = TypeAdapter(Annotated[_MessageFrame | _PingFrame | _PresenceFrame, Field(discriminator="type")])


# -- actions the runner carries out -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish a chat message with this text to the room (every replica); acknowledge ``key`` if given."""

    text: str
    key: str | None = None


@dataclass(frozen=True, slots=True)
class AskPresence:
    """Answer with the room's cluster-wide presence list."""


ChatAction = Send | Publish | AskPresence | Close

PONG = Send(dumps({"type": "pong"}))


def error_frame(code: ErrorCode, detail: str) -> str:
    return dumps({"type": "error", "code": code, "detail": detail})


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class ChatProtocol:
    __slots__ = ("bucket", "max_bytes", "rate_limited")  # one per socket

    def __init__(self, *, max_bytes: int, bucket: TokenBucket) -> None:
        self.max_bytes = max_bytes
        self.bucket = bucket
        self.rate_limited = 0

    def receive(self, text: str) -> list[ChatAction]:
        # Backstop for servers that do not enforce ws_max_size themselves (wsproto, TestClient).
        if over_limit(text, self.max_bytes):
            return [Close(CloseCode.MESSAGE_TOO_BIG, "frame too large")]
        try:
            frame = _ClientFrame.validate_json(text)
        except ValidationError as exc:
            return [Send(error_frame(ErrorCode.BAD_REQUEST, _explain(exc)))]
        if isinstance(frame, _PingFrame):
            return [PONG]
        # messages and presence requests both cost Redis work: both count toward HERALD_RATE_LIMIT
        if not self.bucket.take():
            self.rate_limited += 1
            return [Send(error_frame(ErrorCode.RATE_LIMITED, "too many requests; slow down"))]
        if isinstance(frame, _MessageFrame):
            return [Publish(frame.text, frame.key)]
        return [AskPresence()]

    def receive_bytes(self, data: bytes) -> list[ChatAction]:
        if len(data) > self.max_bytes:
            return [Close(CloseCode.MESSAGE_TOO_BIG, "frame too large")]
        return [Send(error_frame(ErrorCode.BAD_REQUEST, NOT_JSON))]


def _explain(exc: ValidationError) -> str:
    error = exc.errors()[0]
    kind = error["type"]
    if kind == "json_invalid":
        return NOT_JSON
    if not error["loc"] and kind not in ("union_tag_not_found", "union_tag_invalid"):
        return "a frame must be a JSON object"
    if kind == "union_tag_not_found":
        return 'a frame needs a "type": "message", "ping" or "presence"'
    if kind == "union_tag_invalid":
        return 'unknown "type"; expected "message", "ping" or "presence"'
    where = ".".join(str(part) for part in error["loc"][1:]) or "frame"
    return f"{where}: {error['msg']}"


def ack_frame(key: str, offset: str) -> str:
    return dumps({"type": "ack", "key": key, "id": offset})
