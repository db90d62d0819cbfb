"""Offsets are Redis stream ids: parsed and compared as numbers, never as strings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import SINCE_START, Event, is_offset, parse_offset

ids = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))


def text(ms: int, seq: int) -> str:
    return f"{ms}-{seq}"


def test_a_stream_id_parses_into_milliseconds_and_sequence() -> None:
    assert parse_offset("1700000000000-3") == (1700000000000, 3)


def test_since_start_is_the_lowest_offset() -> None:
    assert SINCE_START == "0"
    assert parse_offset(SINCE_START) == (0, 0)
    assert parse_offset(SINCE_START) < parse_offset("0-1")


def test_a_bare_millisecond_id_means_sequence_zero() -> None:
    assert parse_offset("42") == (42, 0)


def test_1_10_comes_after_1_9_although_it_sorts_before_it_as_a_string() -> None:
    assert "1-10" < "1-9"
    assert parse_offset("1-10") > parse_offset("1-9")


def test_9_0_comes_before_10_0_although_it_sorts_after_it_as_a_string() -> None:
    assert "9-0" > "10-0"
    assert parse_offset("9-0") < parse_offset("10-0")


@pytest.mark.parametrize(
    "bad",
    ["", "-", "abc", "1-", "-1", "1-2-3", "1.5-2", " 1-2", "1-2 ", "1 -2", "0x10-1", "１-2", "+1-2", "1-+2", "null"],
)
def test_anything_but_a_stream_id_is_not_an_offset(bad: str) -> None:
    assert not is_offset(bad)
    with pytest.raises(ValueError):
        parse_offset(bad)


def test_the_largest_stream_id_is_an_offset() -> None:
    assert parse_offset(f"{2**64 - 1}-{2**64 - 1}") == (2**64 - 1, 2**64 - 1)


@pytest.mark.parametrize("bad", [f"{2**64}-0", f"0-{2**64}", "99999999999999999999999-1", "1-99999999999999999999999"])
def test_a_number_too_large_for_a_stream_id_is_not_an_offset(bad: str) -> None:
    assert not is_offset(bad)


@given(ids, ids)
def test_parsed_order_is_numeric_order(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert (parse_offset(text(*a)) < parse_offset(text(*b))) == (a < b)


@given(ids)
def test_every_stream_id_round_trips(value: tuple[int, int]) -> None:
    assert is_offset(text(*value))
    assert parse_offset(text(*value)) == value


def test_a_stored_event_carries_its_parsed_position() -> None:
    event = Event.stored("chat:a", "5-7", "{}")
    assert event.position == (5, 7)


def test_an_ephemeral_event_has_no_offset_and_no_position() -> None:
    event = Event("chat:a", None, '{"type":"join"}')
    assert event.offset is None and event.position is None


def test_memo_encodes_an_event_once_whatever_the_number_of_callers() -> None:
    calls: list[Event] = []

    def encode(event: Event) -> str:
        calls.append(event)
        return event.data.upper()

    event = Event.stored("chat:a", "1-1", '{"a":1}')
    assert [event.memo(encode) for _ in range(5)] == ['{"A":1}'] * 5
    assert calls == [event]


def test_memo_keeps_one_value_per_encoder() -> None:
    def first(event: Event) -> str:
        return "first:" + event.data

    def second(event: Event) -> str:
        return "second:" + event.data

    event = Event.stored("chat:a", "1-1", "x")
    assert (event.memo(first), event.memo(second), event.memo(first)) == ("first:x", "second:x", "first:x")
