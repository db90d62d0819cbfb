"""The client's decisions as a sans-I/O core: no socket, no sleep, no clock.

The I/O layers (``room.py``, ``graphql.py``) ask it three questions and do what it says:
how long to wait before the next connection attempt (or whether to give up), which
``since`` to resume from, and what the application sees of a frame (deduplicated by
offset, a ``gap`` frame when the server could not recover). Every rule of SPEC §11 is
therefore a plain unit test.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

from herald_client.errors import AuthRefused, ProtocolError

Frame = dict[str, Any]

#: a room name the server accepts (SPEC §3); anything else would be refused with a 403 handshake
ROOM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_OFFSET = re.compile(r"^(\d+)(?:-(\d+))?$")


class CloseCode(IntEnum):
    """The close codes the client acts on (SPEC §4, §5, §8)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    ABNORMAL = 1006
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    INSUFFICIENT_STATE = 4010
    GQL_BAD_REQUEST = 4400
    GQL_UNAUTHORIZED = 4401
    GQL_FORBIDDEN = 4403
    GQL_SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    GQL_CONNECTION_INITIALISATION_TIMEOUT = 4408
    GQL_SUBSCRIBER_ALREADY_EXISTS = 4409
    GQL_TOO_MANY_INITIALISATION_REQUESTS = 4429
    GQL_INTERNAL_SERVER_ERROR = 4500


class Disconnect(Enum):
    """What a disconnect means for the next attempt."""

    RETRY = "retry"  # network drop, 1000/1001/1006/1011, 4010 (resume with since), 4408, 4500, 5xx
    RESTART = "restart"  # 1012: the replica drains; every client of it leaves at once, so spread out
    OVERLOAD = "overload"  # 1013: at least HeraldPolicy.try_again_later_s
    AUTH = "auth"  # 403 handshake, 1008, 4403: never again with this token
    FATAL = "fatal"  # the same request would be refused the same way


_AUTH_CODES = {CloseCode.POLICY_VIOLATION, CloseCode.GQL_FORBIDDEN}
#: 4401 is graphql-transport-ws's "subscribe before ack": a client bug, not a token problem
_FATAL_CODES = {
    CloseCode.MESSAGE_TOO_BIG,
    CloseCode.GQL_UNAUTHORIZED,
    CloseCode.GQL_BAD_REQUEST,
    CloseCode.GQL_SUBPROTOCOL_NOT_ACCEPTABLE,
    CloseCode.GQL_SUBSCRIBER_ALREADY_EXISTS,
    CloseCode.GQL_TOO_MANY_INITIALISATION_REQUESTS,
}


def classify_close(code: int | None) -> Disconnect:
    """A close code (None: the connection broke without one) -> what to do next."""
    if code == CloseCode.SERVICE_RESTART:
        return Disconnect.RESTART
    if code == CloseCode.TRY_AGAIN_LATER:
        return Disconnect.OVERLOAD
    if code in _AUTH_CODES:
        return Disconnect.AUTH
    if code in _FATAL_CODES:
        return Disconnect.FATAL
    return Disconnect.RETRY


def classify_handshake(status: int) -> Disconnect:
    """An HTTP status refusing the WebSocket handshake -> what to do next.

    Herald refuses a bad token with 403 (a bad room name too, but the client checks names
    before connecting). 5xx, 429 and the like come from proxies and draining replicas.
    """
    if status in (401, 403):
        return Disconnect.AUTH
    if status in (400, 404):
        return Disconnect.FATAL
    return Disconnect.RETRY


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """The reconnect schedule (SPEC §11). Every delay is drawn with full jitter: uniform(0, step)."""

    #: first backoff step; it doubles after every failed attempt ...
    base_s: float = 0.5
    #: ... up to this
    cap_s: float = 20.0
    #: after 1013 (replica full, or this client too slow) wait at least this long
    try_again_later_s: float = 5.0
    #: after 1012 the first attempt waits uniform(0, restart_spread_s): a draining replica's clients
    #: arrive at the survivors spread over this window instead of all at once (0: no spread)
    restart_spread_s: float = 3.0
    #: a send or presence request that got no answer within this time fails (OutcomeUnknown if it was sent)
    request_timeout_s: float = 30.0
    #: attempts of a request answered ``unavailable`` or ``rate_limited`` before the error is raised
    request_attempts: int = 4


class Reconnector:
    """Backoff state of one logical connection: ``connected()`` on success, ``next_delay()`` on loss."""

    def __init__(self, policy: ReconnectPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        #: failed attempts since the last successful connection
        self.attempt = 0

    def connected(self) -> None:
        self.attempt = 0

    def step(self) -> float:
        """The next full-jitter backoff delay: uniform(0, min(cap, base * 2**attempt))."""
        ceiling = min(self.policy.cap_s, self.policy.base_s * 2**self.attempt)
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def next_delay(self, kind: Disconnect, detail: str = "", code: int | None = None) -> float:
        """Seconds to wait before the next attempt; raises when there must be none."""
        if kind is Disconnect.AUTH:
            raise AuthRefused(f"the server refused the token ({detail}); set a new token to reconnect", code)
        if kind is Disconnect.FATAL:
            raise ProtocolError(f"the server closed the connection: {detail}", code)
        first = self.attempt == 0
        step = self.step()
        if kind is Disconnect.OVERLOAD:
            return self.policy.try_again_later_s + step
        if kind is Disconnect.RESTART and first:
            return self.rng.uniform(0, self.policy.restart_spread_s)
        return step


def parse_offset(offset: str) -> tuple[int, int]:
    """``"<ms>-<seq>"`` (or ``"0"``) -> a tuple ordered as the stream is (``"1-10"`` after ``"1-9"``)."""
    match = _OFFSET.match(offset)
    if match is None:
        raise ValueError(f"not a Herald offset: {offset!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def is_offset(value: object) -> bool:
    return isinstance(value, str) and _OFFSET.match(value) is not None and "-" in value


class RoomTracker:
    """One room's position: the resume point, duplicate filter and gap detection.

    ``resume`` is the offset of the newest message handed on (or the position the welcome
    gave, when none was): the ``since`` of the next connection.
    """

    def __init__(self, room: str, since: str | None = None) -> None:
        self.room = room
        self.resume: str | None = since
        self._last = parse_offset(since) if since is not None else None
        #: a gap was told and no message has arrived since
        self._gap_told = False

    def welcome(self, frame: Frame) -> list[Frame]:
        """A welcome frame -> what the application must see before anything else (the gap frame)."""
        out: list[Frame] = []
        if frame.get("recovered") is False:
            if not self._gap_told:
                out.append({"type": "gap", "room": self.room})
            self._gap_told = True
            # After a gap every retained event is new, whatever its offset (a history Redis lost
            # restarts its offsets), and "0" reaches all of them: resume from there until a
            # message arrives, so a connection lost before then does not report the gap twice.
            self.resume = "0"
            self._last = None
        if self.resume is None:
            # First connection: resume from the room's newest event as of now; an empty room
            # resumes from its very beginning ("0"), so nothing published meanwhile is missed.
            offset = frame.get("offset")
            self.resume = offset if isinstance(offset, str) else "0"
            self._last = parse_offset(self.resume)
        return out

    def accept(self, frame: Frame) -> bool:
        """Whether the application should see this message/join/leave frame (False: a duplicate)."""
        if frame.get("type") != "message":
            return True
        offset = frame.get("id")
        if not isinstance(offset, str) or not is_offset(offset):
            return True
        position = parse_offset(offset)
        if self._last is not None and position <= self._last:
            return False
        self._last = position
        self.resume = offset
        self._gap_told = False
        return True


_SINCE_VARIABLE = re.compile(r"\$since\s*:")


class SubscriptionTracker:
    """A GraphQL subscription's position, when its operation takes a ``$since`` variable.

    The offset of each result is the ``offset`` (``Book``) or ``id`` (``ChatMessage``) field of
    its root field, when it looks like an offset; a reconnect resubscribes with
    ``since`` = the last one, and results at or before it are dropped as duplicates.
    """

    def __init__(self, query: str, variables: dict[str, Any] | None) -> None:
        self.variables = dict(variables or {})
        self.resumable = _SINCE_VARIABLE.search(query) is not None
        since = self.variables.get("since")
        self.resume: str | None = since if isinstance(since, str) else None
        self._last = parse_offset(since) if isinstance(since, str) and _OFFSET.match(since) else None

    def variables_for_next_attempt(self) -> dict[str, Any]:
        if self.resumable and self.resume is not None:
            return {**self.variables, "since": self.resume}
        return dict(self.variables)

    def accept(self, result: Frame) -> bool:
        """Whether the application should see this result (False: already seen before a reconnect)."""
        offset = _result_offset(result)
        if offset is None:
            return True
        position = parse_offset(offset)
        if self._last is not None and position <= self._last:
            return False
        self._last = position
        self.resume = offset
        return True


def _result_offset(result: Frame) -> str | None:
    data = result.get("data")
    if not isinstance(data, dict) or len(data) != 1:
        return None
    (root,) = data.values()
    if not isinstance(root, dict):
        return None
    for field in ("offset", "id"):
        value = root.get(field)
        if is_offset(value):
            return str(value)
    return None
