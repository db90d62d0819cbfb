"""Reading a channel's retained events (its bounded stream)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster

from broker.connect import text
from broker.keys import ChannelKeys
from broker.types import LAST_POSITION, Event, Offset, ParsedOffset, parse_offset


@dataclass(slots=True)
class HistoryPage:
    channel: str
    events: list[Event]
    #: the channel's newest retained offset (None: empty stream)
    newest: Offset | None
    #: the newest offset ever trimmed away (None: nothing trimmed yet)
    trimmed: ParsedOffset | None
    #: the stream's first offset ever (None: nothing published since Redis last started empty)
    origin: ParsedOffset | None = None

    def foreign(self, since: ParsedOffset) -> bool:
        """True for a position this stream cannot have given out: before its origin, after its
        newest event, or any in an empty stream. Redis lost the history the client had seen
        (a restart without persistence, say)."""
        if since == (0, 0):
            return False
        newest = parse_offset(self.newest) if self.newest is not None else None
        return newest is None or since > newest or (self.origin is not None and since < self.origin)

    def reaches(self, since: ParsedOffset) -> bool:
        """True when every event after ``since`` is still retained."""
        return self.gap_after(since) is None

    def gap_after(self, since: ParsedOffset) -> ParsedOffset | None:
        """None when every event after ``since`` is retained; else the newest position lost
        (``LAST_POSITION`` when the history ``since`` belongs to is gone altogether)."""
        if self.foreign(since):
            return LAST_POSITION
        if self.trimmed is not None and self.trimmed > since:
            return self.trimmed
        return None

    @property
    def newest_position(self) -> ParsedOffset | None:
        return parse_offset(self.newest) if self.newest is not None else None


def to_events(channel: str, entries: list[Any]) -> list[Event]:
    return [Event.stored(channel, text(entry_id), text(fields[b"d"])) for entry_id, fields in entries]


def normalise(since: Offset) -> str:
    ms, seq = parse_offset(since)
    return f"{ms}-{seq}"


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One page read: the events after ``after`` (at most ``limit``) plus the stream's bounds;
    ``after=None`` asks only for the newest offset. Its commands run in a MULTI/EXEC (``broker.reads``)."""

    keys: ChannelKeys
    after: Offset | None
    limit: int | None = None

    def commands(self) -> list[tuple[Any, ...]]:
        """This read's commands (redis-py names them; their replies are parsed as its pipelines parse
        them), to run in one MULTI/EXEC with other reads of the same hash slot."""
        keys = self.keys
        newest = ("XREVRANGE", keys.stream, "+", "-", "COUNT", 1)
        if self.after is None:
            return [newest]
        commands: list[tuple[Any, ...]] = []
        # Nothing can follow the largest id, and Redis refuses "(" before it rather than answer empty.
        if parse_offset(self.after) != LAST_POSITION:
            count = ("COUNT", self.limit) if self.limit is not None else ()
            commands.append(("XRANGE", keys.stream, f"({normalise(self.after)}", "+", *count))
        return [*commands, ("HMGET", keys.meta, "trimmed", "origin"), newest]

    def parse(self, replies: list[Any]) -> HistoryPage:
        channel = self.keys.channel
        newest = replies[-1]
        newest_id = text(newest[0][0]) if newest else None
        if self.after is None:
            return HistoryPage(channel, events=[], newest=newest_id, trimmed=None)
        entries = replies[0] if len(replies) == 3 else []
        trimmed, origin = replies[-2]
        return HistoryPage(
            channel=channel,
            events=to_events(channel, entries),
            newest=newest_id,
            trimmed=parse_offset(text(trimmed)) if trimmed is not None else None,
            origin=parse_offset(text(origin)) if origin is not None else None,
        )

    def script_args(self) -> list[str]:
        """This read as ``lua/presence.lua``'s read arguments (an enter that reads in the same round trip)."""
        if self.after is None:
            return ["newest", "", ""]
        start = "" if parse_offset(self.after) == LAST_POSITION else f"({normalise(self.after)}"
        return ["page", start, "" if self.limit is None else str(self.limit)]

    def parse_script(self, page: list[Any]) -> HistoryPage:
        """The page ``lua/presence.lua`` read for ``script_args()``: the newest id, then (a page read) the
        bounds and the entries as id, data, id, data..."""
        channel = self.keys.channel
        newest_id = text(page[0]) if page[0] is not None else None
        if self.after is None:
            return HistoryPage(channel, events=[], newest=newest_id, trimmed=None)
        trimmed, origin, entries = page[1], page[2], page[3:]
        return HistoryPage(
            channel=channel,
            events=[Event.stored(channel, text(entries[i]), text(entries[i + 1])) for i in range(0, len(entries), 2)],
            newest=newest_id,
            trimmed=parse_offset(text(trimmed)) if trimmed is not None else None,
            origin=parse_offset(text(origin)) if origin is not None else None,
        )


async def read_latest(client: redis.Redis | RedisCluster, keys: ChannelKeys, limit: int) -> list[Event]:
    """The last ``limit`` retained events, oldest first."""
    entries = await client.xrevrange(keys.stream, max="+", min="-", count=limit)
    return to_events(keys.channel, list(reversed(entries or [])))
