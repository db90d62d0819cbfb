"""Catch-up as a sans-I/O machine: positions, pages, gaps, overflow — no Redis.

A fake stream plays Redis: it answers the machine's reads the way
a ``broker.history.PageQuery`` read does (events after an offset, the newest id, the
newest trimmed id, the origin), and the tests interleave live events with those
reads exactly where a real replay could see them arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from broker.catchup import CatchUp, Read
from broker.history import HistoryPage
from broker.types import LAST_POSITION, Event, ParsedOffset, format_offset, parse_offset

CHANNEL = "chat:a"


def ev(seq: int) -> Event:
    return Event.stored(CHANNEL, f"1-{seq}", f'{{"n":{seq}}}')


def join(user: str) -> Event:
    return Event(CHANNEL, None, f'{{"type":"join","user":"{user}"}}')


@dataclass
class Stream:
    """A channel's stream as Redis holds it: retained sequence numbers, and what was trimmed."""

    retained: list[int] = field(default_factory=list)
    trimmed: int | None = None
    origin: int | None = None
    reads: list[Read] = field(default_factory=list)

    def append(self, *seqs: int, keep: int | None = None) -> None:
        self.retained += seqs
        if self.origin is None and self.retained:
            self.origin = self.retained[0]
        if keep is not None and len(self.retained) > keep:
            gone, self.retained = self.retained[:-keep], self.retained[-keep:]
            self.trimmed = gone[-1]

    def answer(self, read: Read) -> HistoryPage:
        self.reads.append(read)
        after = parse_offset(read.after) if read.after is not None else None
        events = [ev(n) for n in self.retained if after is not None and (1, n) > after][: read.count]
        return HistoryPage(
            CHANNEL,
            events=events if read.after is not None else [],
            newest=f"1-{self.retained[-1]}" if self.retained else None,
            trimmed=(1, self.trimmed) if self.trimmed is not None else None,
            origin=(1, self.origin) if self.origin is not None else None,
        )


class Consumer:
    """Drives a ``CatchUp`` the way ``replay_pages`` does, recording what it hands on."""

    def __init__(self, position: ParsedOffset | None = None, *, limit: int = 100, page: int = 3, **kw: bool) -> None:
        self.live: list[Event] = []
        self.replayed: list[Event] = []
        self.catchup = CatchUp(self.live.append, position, buffer_limit=limit, page_events=page, **kw)

    def step(self, stream: Stream) -> bool:
        """One read or drain; False once live."""
        request = self.catchup.next_read()
        if request is not None:
            self.replayed += self.catchup.page(stream.answer(request), request)
            return True
        drained = self.catchup.drain()
        if drained is None:
            return False
        self.replayed += drained
        return True

    def run(self, stream: Stream) -> None:
        for _ in range(100):
            if not self.step(stream):
                return
        raise AssertionError("the replay never ended")

    def seen(self) -> list[str]:
        return [describe(event) for event in self.replayed + self.live]


def describe(event: Event) -> str:
    if event.gap:
        assert event.position is not None
        return "gap" if event.position == LAST_POSITION else f"gap<={format_offset(event.position)}"
    return event.offset or event.data


# -- table: one replay, live events arriving at given moments -----------------------------------------


@dataclass
class Case:
    name: str
    stored: list[int]
    since: ParsedOffset | None
    #: live events by step: before the first read (0), after it (1), ...
    live: dict[int, list[int]]
    expected: list[str]
    keep: int | None = None


CASES = [
    Case("empty stream, nothing live", [], (0, 0), {}, []),
    Case("empty stream, live during the read", [], (0, 0), {0: [1, 2]}, ["1-1", "1-2"]),
    Case("history only", [1, 2, 3, 4], (1, 1), {}, ["1-2", "1-3", "1-4"]),
    Case(
        "live before history: buffered events already in the stream come once",
        [1, 2, 3, 4, 5],
        (0, 0),
        {0: [4, 5, 6]},
        ["1-1", "1-2", "1-3", "1-4", "1-5", "1-6"],
    ),
    Case(
        "history overlapping live, arriving between pages",
        [1, 2, 3, 4],
        (0, 0),
        {1: [5], 2: [6, 7]},
        ["1-1", "1-2", "1-3", "1-4", "1-5", "1-6", "1-7"],
    ),
    Case(
        "trimmed gap: told first, then every retained event",
        [1, 2, 3, 4, 5, 6],
        (1, 1),
        {},
        ["gap<=1-3", "1-4", "1-5", "1-6"],
        keep=3,
    ),
    Case(
        "since the newest trimmed offset: nothing lost",
        [1, 2, 3, 4, 5, 6],
        (1, 3),
        {},
        ["1-4", "1-5", "1-6"],
        keep=3,
    ),
    Case("since 0 with something trimmed: a gap", [1, 2, 3], (0, 0), {}, ["gap<=1-1", "1-2", "1-3"], keep=2),
    Case("lost stream: since after its newest", [1, 2], (1, 9), {}, ["gap", "1-1", "1-2"]),
    Case("lost stream, itself trimmed since: told once", [1, 2, 3, 4, 5], (0, 9), {}, ["gap", "1-4", "1-5"], keep=2),
    Case("lost stream: empty now", [], (1, 9), {0: [10]}, ["gap", "1-10"]),
    Case(
        "ephemeral events keep their place among live ones",
        [1],
        (0, 0),
        {0: [2]},
        ["1-1", "1-2", '{"type":"join","user":"ann"}'],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_replay_hands_on_every_event_after_its_position_once_in_order(case: Case) -> None:
    stream = Stream()
    stream.append(*case.stored, keep=case.keep)
    consumer = Consumer(case.since)
    extra_join = case.name.startswith("ephemeral")
    for step in range(100):
        for seq in case.live.get(step, []):
            stream.append(seq, keep=case.keep)
            consumer.catchup(ev(seq))
        if extra_join and step == 0:
            consumer.catchup(join("ann"))
        if not consumer.step(stream):
            break
    assert not consumer.catchup.replaying
    assert consumer.seen() == case.expected


def test_a_subscriber_without_since_starts_where_the_stream_ends() -> None:
    stream = Stream()
    stream.append(1, 2, 3)
    consumer = Consumer(from_newest=True)
    consumer.catchup(ev(3))  # published before the read, delivered after the subscribe: not new to it
    assert consumer.step(stream)
    assert stream.reads[0].after is None  # one read: only where the stream ends
    stream.append(4)
    consumer.catchup(ev(4))  # arrived while it drained its buffer
    consumer.run(stream)
    consumer.catchup(ev(5))
    assert consumer.seen() == ["1-4", "1-5"]
    assert len(stream.reads) == 1


def test_a_full_buffer_is_dropped_and_the_gap_reread_from_the_stream() -> None:
    stream = Stream()
    stream.append(1)
    consumer = Consumer((0, 0), limit=3, page=2)
    consumer.step(stream)  # first page: 1-1
    for seq in range(2, 12):  # a flood while the client reads slowly
        stream.append(seq)
        consumer.catchup(ev(seq))
    consumer.run(stream)
    assert consumer.catchup.overflows >= 1
    assert consumer.seen() == [f"1-{n}" for n in range(1, 12)]


def test_an_overflow_during_the_last_read_forces_another_read() -> None:
    stream = Stream()
    stream.append(1, 2)
    consumer = Consumer((0, 0), limit=2, page=10)
    request = consumer.catchup.next_read()
    assert request is not None
    page = stream.answer(request)  # the stream ends at 1-2 when read...
    for seq in (3, 4, 5):  # ...then more than the buffer holds arrives before the answer does
        stream.append(seq)
        consumer.catchup(ev(seq))
    consumer.replayed += consumer.catchup.page(page, request)
    assert consumer.catchup.next_read() is not None, "the answer predates the overflow: read again"
    consumer.run(stream)
    assert consumer.seen() == ["1-1", "1-2", "1-3", "1-4", "1-5"]


def test_live_it_drops_duplicates_and_older_events() -> None:
    consumer = Consumer((1, 1), replaying=False)
    for n in (1, 2, 2, 1, 3):
        consumer.catchup(ev(n))
    assert consumer.seen() == ["1-2", "1-3"]


def test_a_live_gap_marker_reaches_only_consumers_that_missed_something() -> None:
    behind, ahead = Consumer((1, 2), replaying=False), Consumer((1, 5), replaying=False)
    for consumer in (behind, ahead):
        consumer.catchup(Event.gap_marker(CHANNEL, (1, 4)))
    assert behind.seen() == ["gap<=1-4"]
    assert ahead.seen() == []


def test_a_lost_history_marker_resets_the_position_so_the_new_stream_is_delivered() -> None:
    consumer = Consumer((5, 0), replaying=False)
    consumer.catchup(Event.gap_marker(CHANNEL, LAST_POSITION))
    consumer.catchup(ev(1))  # the new stream's ids may be lower than the lost one's
    assert consumer.seen() == ["gap", "1-1"]


def test_a_reconnect_replays_from_the_lowest_noted_floor_until_an_event_is_handed_on() -> None:
    stream = Stream()
    stream.append(1, 2, 3, 4)
    channel = Consumer(replaying=False)
    channel.catchup.note_floor((1, 3))
    channel.catchup.note_floor((1, 2))  # a subscriber that read earlier
    channel.catchup.pause()
    channel.run(stream)
    assert channel.seen() == ["1-3", "1-4"]
    stream.append(5)
    channel.catchup(ev(5))
    channel.catchup.note_floor((1, 1))  # too late: an event set the position
    channel.catchup.pause()
    channel.run(stream)
    assert channel.seen() == ["1-3", "1-4", "1-5"]


def test_a_reader_that_found_the_stream_empty_makes_a_replay_start_from_the_beginning() -> None:
    stream = Stream()
    stream.append(1, 2)
    channel = Consumer(replaying=False)
    channel.catchup.note_floor((1, 2))
    channel.catchup.note_floor(None)
    channel.catchup.pause()
    channel.run(stream)
    assert channel.seen() == ["1-1", "1-2"]


def test_a_floor_never_drops_a_live_event_an_earlier_reader_needs() -> None:
    # The first subscriber read an empty stream; a second read found 1-1 already stored, but 1-1's
    # live delivery is still on its way: it must reach the first subscriber.
    channel = Consumer(replaying=False)
    channel.catchup.note_floor(None)
    channel.catchup.note_floor((1, 1))
    channel.catchup(ev(1))
    assert channel.seen() == ["1-1"]


def test_pausing_again_mid_replay_makes_a_finished_read_count_for_nothing() -> None:
    stream = Stream()
    stream.append(1, 2)
    consumer = Consumer((0, 0), page=10)
    request = consumer.catchup.next_read()
    assert request is not None
    page = stream.answer(request)
    consumer.catchup.pause()  # the link dropped and came back while that read was in flight
    stream.append(3)  # published while the link was down: only the stream has it
    consumer.replayed += consumer.catchup.page(page, request)
    consumer.run(stream)
    assert consumer.seen() == ["1-1", "1-2", "1-3"]
