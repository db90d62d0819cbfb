"""The broker's vocabulary: offsets, events, sinks and subscriptions.

Guarantees every ``Broker`` gives (real Redis and ``memory://`` alike):

* ``publish`` is one round trip: one script appends the event to the channel's
  bounded stream and PUBLISHes it with its offset, atomically.
* Offsets of one channel strictly increase in publish order. They are Redis
  stream ids (``"<ms>-<seq>"``); compare them with :func:`parse_offset`, never
  as strings (``"1-10"`` comes after ``"1-9"``).
* A subscription delivers, in offset order, with no gap and no duplicate:
  first every retained event after ``since`` (when given), then live events.
  ``Subscription.recovered`` says whether history still reached ``since``.
* Sinks are plain functions called synchronously on the event loop, once per
  event, with the same ``Event`` object for every local sink: a sink must not
  block and must not await (it typically ``put_nowait``\\ s into a bounded queue).
* Ephemeral events (join/leave) carry ``offset=None``, are not stored and are
  never replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

Offset = str
ParsedOffset = tuple[int, int]

#: ``since`` value meaning "every retained event".
SINCE_START: Offset = "0"

#: Both halves of a stream id are unsigned 64-bit: Redis rejects anything larger.
MAX_PART = 2**64 - 1
LAST_POSITION: ParsedOffset = (MAX_PART, MAX_PART)


def parse_offset(offset: Offset) -> ParsedOffset:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; ``"0"`` -> ``(0, 0)``.

    Raises ``ValueError`` for anything that is not a stream id.
    """
    ms, sep, seq = offset.partition("-")
    # isascii: str.isdigit() also accepts non-ASCII (e.g. fullwidth) digits, which Redis would not
    if not (offset.isascii() and ms.isdigit()) or (sep and not seq.isdigit()):
        raise ValueError(f"not an offset: {offset!r}")
    parsed = int(ms), int(seq) if sep else 0
    if parsed[0] > MAX_PART or parsed[1] > MAX_PART:
        raise ValueError(f"not an offset (out of range): {offset!r}")
    return parsed


def format_offset(position: ParsedOffset) -> Offset:
    return f"{position[0]}-{position[1]}"


def is_offset(text: str) -> bool:
    try:
        parse_offset(text)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class Event:
    """One event of one channel, decoded once per replica.

    ``data`` is the JSON object text the publisher passed (for ephemeral
    events: the complete client frame). ``memo`` caches derived encodings so
    that N local subscribers cost one encoding, not N.
    """

    channel: str
    offset: Offset | None
    data: str
    #: ``parse_offset(offset)``, computed once: the hot path compares these; for a gap marker,
    #: the newest position lost (``LAST_POSITION``: the history itself was lost)
    position: ParsedOffset | None = None
    #: a gap marker, not an event: stored events up to ``position`` can no longer be delivered
    gap: bool = False
    _memo: dict[Callable[[Event], Any], Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def stored(cls, channel: str, offset: Offset, data: str) -> Event:
        return cls(channel, offset, data, parse_offset(offset))

    @classmethod
    def gap_marker(cls, channel: str, lost_through: ParsedOffset) -> Event:
        return cls(channel, None, "", lost_through, gap=True)

    def memo(self, encoder: Callable[[Event], Any]) -> Any:
        """``encoder(self)``, computed once per event whatever the number of callers."""
        try:
            return self._memo[encoder]
        except KeyError:
            value = self._memo[encoder] = encoder(self)
            return value


Sink = Callable[[Event], None]


class Subscription(Protocol):
    """One sink registered on one channel.

    It starts out buffering: the caller first sends ``replay`` (the retained
    events after ``since``) its own way, then calls ``go_live()``, which hands
    the sink the buffered live events newer than the replay, and every later
    event directly.
    """

    channel: str
    #: False when ``since`` was given and history no longer reaches it; True
    #: when it does; None when no ``since`` was given.
    recovered: bool | None
    #: The channel's newest retained offset at subscribe time; None when empty.
    offset: Offset | None
    #: Retained events after ``since``, oldest first (empty without ``since``).
    replay: list[Event]

    def go_live(self) -> bool:
        """Flush the buffer and go live; False when the buffer overflowed (the caller must drop this subscriber)."""

    async def close(self) -> None:
        """Stop delivery; unsubscribes from Redis when this was the last local sink. Idempotent."""
