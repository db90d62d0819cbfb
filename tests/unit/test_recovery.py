"""The history -> live handoff: ``merge`` (pure) and ``RecoveringSink``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker import Event
from broker.recovery import RecoveringSink, merge


def ev(seq: int, ms: int = 1) -> Event:
    return Event.stored("chat:a", f"{ms}-{seq}", f'{{"n":{seq}}}')


def join(user: str) -> Event:
    return Event("chat:a", None, f'{{"type":"join","user":"{user}"}}')


def offsets(events: list[Event]) -> list[str | None]:
    return [event.offset for event in events]


# -- merge ---------------------------------------------------------------------


def test_merge_of_nothing_is_nothing_and_keeps_the_position() -> None:
    assert merge(None) == ([], None)
    assert merge((1, 5), [], []) == ([], (1, 5))


def test_merge_without_a_position_keeps_every_event_and_ends_at_the_last() -> None:
    events, position = merge(None, [ev(1), ev(2), ev(3)])
    assert offsets(events) == ["1-1", "1-2", "1-3"]
    assert position == (1, 3)


def test_merge_drops_events_at_or_below_the_position() -> None:
    events, position = merge((1, 2), [ev(1), ev(2), ev(3)])
    assert offsets(events) == ["1-3"]
    assert position == (1, 3)


def test_merge_of_history_and_an_overlapping_buffer_has_no_duplicate() -> None:
    events, position = merge((1, 0), [ev(1), ev(2), ev(3)], [ev(2), ev(3), ev(4), ev(5)])
    assert offsets(events) == ["1-1", "1-2", "1-3", "1-4", "1-5"]
    assert position == (1, 5)


def test_merge_of_a_buffer_entirely_inside_history_adds_nothing() -> None:
    events, _ = merge(None, [ev(1), ev(2), ev(3)], [ev(2), ev(3)])
    assert offsets(events) == ["1-1", "1-2", "1-3"]


def test_merge_with_a_position_past_everything_returns_nothing_and_keeps_the_position() -> None:
    assert merge((9, 0), [ev(1)], [ev(2)]) == ([], (9, 0))


def test_merge_compares_offsets_parsed_so_1_10_follows_1_9() -> None:
    events, position = merge((1, 9), [ev(8), ev(9), ev(10), ev(11)])
    assert offsets(events) == ["1-10", "1-11"]
    assert position == (1, 11)


def test_merge_orders_by_milliseconds_before_sequence() -> None:
    events, _ = merge((9, 5), [Event.stored("c", "9-4", "{}"), Event.stored("c", "10-0", "{}")])
    assert offsets(events) == ["10-0"]


def test_merge_passes_ephemeral_events_through_in_arrival_order() -> None:
    events, position = merge((1, 2), [ev(1), join("ann"), ev(3)], [join("bob"), ev(3), ev(4)])
    assert [e.offset or e.data for e in events] == [
        '{"type":"join","user":"ann"}',
        "1-3",
        '{"type":"join","user":"bob"}',
        "1-4",
    ]
    assert position == (1, 4)


def test_merge_does_not_let_an_ephemeral_event_move_the_position() -> None:
    assert merge((1, 2), [join("ann")]) == ([join("ann")], (1, 2))


def test_merge_is_pure_and_leaves_its_inputs_alone() -> None:
    history, buffered = [ev(1), ev(2)], [ev(2), ev(3)]
    merge(None, history, buffered)
    assert offsets(history) == ["1-1", "1-2"] and offsets(buffered) == ["1-2", "1-3"]


@given(
    st.integers(0, 30),
    st.lists(st.integers(1, 40), max_size=40).map(sorted),
    st.lists(st.integers(1, 40), max_size=40).map(sorted),
)
def test_merge_of_sorted_batches_is_strictly_increasing_and_loses_nothing_new(
    start: int, history: list[int], live: list[int]
) -> None:
    events, position = merge((1, start), [ev(n) for n in history], [ev(n) for n in live])
    got = [e.position for e in events if e.position is not None]
    assert len(got) == len(events)
    assert got == sorted(set(got)), "strictly increasing, no duplicate"
    expected = sorted({n for n in history if n > start} | {n for n in live if n > max([start, *history])})
    assert [p[1] for p in got] == expected
    assert position == (1, max([start, *history, *live]))


# -- RecoveringSink -------------------------------------------------------------


def recording(limit: int = 100) -> tuple[RecoveringSink, list[Event]]:
    got: list[Event] = []
    return RecoveringSink(got.append, limit), got


def test_a_new_sink_buffers_until_it_goes_live() -> None:
    sink, got = recording()
    sink(ev(1))
    assert got == []
    assert sink.go_live([])
    assert offsets(got) == ["1-1"]


def test_going_live_forwards_only_buffered_events_newer_than_the_replay() -> None:
    sink, got = recording()
    sink.position = (1, 0)
    for n in (2, 3, 4):
        sink(ev(n))
    assert sink.go_live([ev(1), ev(2), ev(3)])
    assert offsets(got) == ["1-4"]


def test_going_live_without_a_replay_drops_buffered_events_up_to_the_welcome_offset() -> None:
    sink, got = recording()
    sink.position = (1, 3)  # the newest retained offset the client was told
    for n in (2, 3, 4):
        sink(ev(n))
    sink.go_live([])
    assert offsets(got) == ["1-4"]


def test_a_live_sink_forwards_new_events_directly_in_order() -> None:
    sink, got = recording()
    sink.go_live([])
    for n in (1, 2, 3):
        sink(ev(n))
    assert offsets(got) == ["1-1", "1-2", "1-3"]


def test_a_live_sink_drops_a_late_pubsub_copy_of_a_replayed_event() -> None:
    sink, got = recording()
    sink.go_live([ev(1), ev(2)])
    sink(ev(2))
    sink(ev(3))
    sink(ev(3))
    assert offsets(got) == ["1-3"]


def test_a_live_sink_forwards_every_ephemeral_event() -> None:
    sink, got = recording()
    sink.go_live([ev(5)])
    sink(join("ann"))
    sink(join("ann"))
    assert got == [join("ann"), join("ann")]


def test_a_sink_whose_buffer_overflowed_says_so_when_going_live() -> None:
    sink, got = recording(limit=2)
    for n in (1, 2, 3):
        sink(ev(n))
    assert sink.overflowed
    assert not sink.go_live([])
    assert offsets(got) == ["1-1", "1-2"]


def test_a_sink_exactly_at_its_buffer_limit_has_not_overflowed() -> None:
    sink, _ = recording(limit=2)
    sink(ev(1))
    sink(ev(2))
    assert sink.go_live([])
