"""Catch-up: one consumer's place in one channel, and the stream -> live handoff (sans-I/O).

Every way an event reaches a consumer late goes through this one machine: a new
subscriber replaying ``since``, a replica replaying a channel after its pub/sub
link came back, a replay whose live buffer overflowed. It awaits nothing and
knows no Redis; a driver (``replay_pages``) reads the pages it asks for.

* While **replaying**, live events are buffered (bounded). The consumer asks
  ``next_read()`` for the next page of the stream after its position, feeds
  the reply to ``page()``, and hands on what it returns. When a read reached
  the stream's end *after* buffering began, the buffered events newer than the
  position are drained, and once the buffer is empty the consumer is live.
  Reading and draining interleave: events go out in offset order, each once.
* A full buffer is dropped and the gap re-read from the stream (the stream
  holds every stored event the buffer held), so a replay never loses events
  for lack of memory.
* When the stream no longer reaches the position (trimmed past it, or Redis
  lost the history), the first thing handed on is a **gap marker**
  (``Event.gap``): the consumer must tell its client. A marker arriving live
  (from an upstream consumer's replay) is handed on only if it concerns this
  consumer (its position is older than what was lost).
* While **live**, events at or below the position are dropped (a pub/sub
  message may arrive after the history read that already contained it).

Ephemeral events (no offset) pass through in arrival order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from broker.history import HistoryPage
from broker.types import LAST_POSITION, Event, Offset, ParsedOffset, Sink, format_offset

#: most events one history page asks for
PAGE_EVENTS = 64
#: the first page of a replay, before its events' size is known
FIRST_PAGE_EVENTS = 8
#: what a page should weigh: after a page of large events the next asks for fewer, so one replaying
#: consumer holds about this much stored data at a time, whatever the size of its events
PAGE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Read:
    """Ask for the events after ``after`` (``None``: only the stream's bounds), at most ``count``."""

    after: Offset | None
    count: int
    #: which buffer generation this read serves (an overflow since makes it stale for completion)
    epoch: int


class CatchUp:
    """A sink with a position: forwards live events to ``target``, or buffers them while replaying."""

    __slots__ = (
        "_buffer",
        "_epoch",
        "_floor",
        "_from_newest",
        "_limit",
        "_need_read",
        "_page_events",
        "_page_limit",
        "_target",
        "overflows",
        "position",
    )

    def __init__(
        self,
        target: Sink,
        position: ParsedOffset | None = None,
        *,
        buffer_limit: int,
        replaying: bool = True,
        from_newest: bool = False,
        page_events: int = PAGE_EVENTS,
    ) -> None:
        self._target = target
        #: the newest event handed on (None: nothing yet, every retained event is new)
        self.position = position
        self._limit = buffer_limit
        # slow start: a first page of unknown weight is small, later ones grow while they stay light
        self._page_limit = page_events
        self._page_events = min(FIRST_PAGE_EVENTS, page_events)
        self._buffer: list[Event] | None = [] if replaying else None
        self._need_read = replaying
        # a subscriber without ``since`` starts where the stream ends: its first read asks only that
        self._from_newest = from_newest
        self._epoch = 0
        # where a replay may start while nothing has been handed on yet (see note_floor)
        self._floor: ParsedOffset | None = None
        #: how many times the live buffer overflowed and was dropped for a re-read
        self.overflows = 0

    @property
    def replaying(self) -> bool:
        return self._buffer is not None

    # -- the sink side: live events, synchronously -------------------------------------

    def __call__(self, event: Event) -> None:
        buffer = self._buffer
        if buffer is not None:
            if len(buffer) >= self._limit:
                buffer.clear()  # every stored one is in the stream: read them again from there
                self._epoch += 1
                self._need_read = True
                self.overflows += 1
            buffer.append(event)
            return
        if self._accept(event):
            self._target(event)

    def _accept(self, event: Event) -> bool:
        """Whether ``event`` is new to this consumer; advances the position."""
        position = event.position
        if event.gap:
            if not self._concerns(event):
                return False
            if position == LAST_POSITION:
                self.position = self._floor = None  # the history restarted: everything retained is new
            return True
        if position is not None:
            if self.position is not None and position <= self.position:
                return False
            self.position = position
        return True

    def _concerns(self, gap: Event) -> bool:
        return self.position is None or gap.position is None or self.position < gap.position

    def note_floor(self, position: ParsedOffset | None) -> None:
        """A reader found the stream's newest at ``position`` (None: empty) after this consumer was
        registered. Until an event is handed on, a replay need not start before the lowest such floor.
        It only says where to *read* from, never what to drop: a reader that found less still needs
        every live event after its own floor."""
        if self.position is None:
            floor = position or (0, 0)
            self._floor = floor if self._floor is None else min(self._floor, floor)

    def _start(self) -> ParsedOffset:
        """Where this consumer's next replay starts: after what it was handed, else its floor."""
        return self.position or self._floor or (0, 0)

    # -- the replay side ----------------------------------------------------------------

    def pause(self) -> None:
        """Start (again) replaying from the position: live events wait in the buffer."""
        if self._buffer is None:
            self._buffer = []
        self._epoch += 1
        self._need_read = True

    def next_read(self) -> Read | None:
        """The page to read next, or None when the stream has been read far enough (drain, then live)."""
        if not self._need_read:
            return None
        if self._from_newest:
            return Read(None, 0, self._epoch)
        return Read(format_offset(self._start()), self._page_events, self._epoch)

    def page(self, page: HistoryPage, read: Read) -> list[Event]:
        """Feed the reply to ``read``; returns what to hand on, in order (a gap marker first if history fell short)."""
        if read.after is None:  # a subscriber without since starts where the stream ends
            self._from_newest = False
            newest = page.newest_position
            if newest is not None and (self.position is None or newest > self.position):
                self.position = newest
            self._need_read = read.epoch != self._epoch
            return []
        out: list[Event] = []
        gap = page.gap_after(self._start())
        if gap == LAST_POSITION:
            # The position belongs to a history Redis lost: everything retained is new. Read it from
            # where the present stream's retained part begins, so its own trimming is not told again.
            self.position, self._floor = None, page.trimmed
            self._need_read = True
            return [Event.gap_marker(page.channel, gap)]
        if gap is not None:
            out.append(Event.gap_marker(page.channel, gap))
        weight = 0
        for event in page.events:
            weight += len(event.data)
            if self._accept(event):
                out.append(event)
        if page.events:
            light = PAGE_BYTES * len(page.events) // max(weight, 1)
            self._page_events = max(1, min(self._page_limit, 2 * read.count, light))
        # Complete only if this read reached the stream's end and began after the live buffer did.
        self._need_read = len(page.events) >= read.count or read.epoch != self._epoch
        return out

    def drain(self) -> list[Event] | None:
        """Buffered events new to this consumer, in order; None once there were none: then it is live."""
        buffer = self._buffer
        if buffer is None:
            return None
        self._buffer = []
        events = [event for event in buffer if self._accept(event)]
        if not events:
            self._buffer = None  # nothing buffered, nothing to read: live from the next event on
            return None
        return events


Reader = Callable[[Read], Awaitable[HistoryPage]]


async def replay_pages(catchup: CatchUp, read: Reader) -> AsyncIterator[list[Event]]:
    """Run ``catchup``'s replay to the end, yielding each batch to hand on, in order.

    The next page is read only once the consumer came back for more (a socket's
    backpressure bounds what one replay holds); once exhausted, ``catchup`` is live.
    """
    while True:
        request = catchup.next_read()
        if request is not None:
            events = catchup.page(await read(request), request)
        else:
            drained = catchup.drain()
            if drained is None:
                return
            events = drained
        if events:
            yield events
