"""Local fan-out: one event, every sink of its channel, once, in order."""

from __future__ import annotations

import logging

import pytest

from broker import Event
from broker.hub import Hub


def ev(seq: int, channel: str = "chat:a") -> Event:
    return Event.stored(channel, f"1-{seq}", f'{{"n":{seq}}}')


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def offsets(self) -> list[str | None]:
        return [event.offset for event in self.events]


def test_the_first_sink_of_a_channel_is_reported_as_first_and_the_last_as_last() -> None:
    hub, a, b = Hub(), Recorder(), Recorder()
    assert hub.add("chat:a", a) is True
    assert hub.add("chat:a", b) is False
    assert hub.count("chat:a") == 2
    assert hub.remove("chat:a", a) is False
    assert hub.remove("chat:a", b) is True
    assert hub.channels() == []


def test_removing_an_unknown_sink_changes_nothing() -> None:
    hub, a = Hub(), Recorder()
    assert hub.remove("chat:a", a) is False
    hub.add("chat:a", a)
    assert hub.remove("chat:a", Recorder()) is False
    assert hub.count("chat:a") == 1


def test_deliver_hands_the_same_event_object_to_every_sink_of_the_channel_only() -> None:
    hub, a, b, other = Hub(), Recorder(), Recorder(), Recorder()
    hub.add("chat:a", a)
    hub.add("chat:a", b)
    hub.add("chat:b", other)
    event = ev(1)
    assert hub.deliver(event) == 2
    assert a.events == [event] and b.events == [event]
    assert a.events[0] is b.events[0]
    assert other.events == []
    assert hub.delivered == 2


def test_an_event_for_a_channel_without_sinks_goes_nowhere() -> None:
    hub = Hub()
    assert hub.deliver(ev(1)) == 0


def test_fan_out_drops_a_duplicate_or_older_event() -> None:
    hub, a = Hub(), Recorder()
    hub.add("chat:a", a)
    for n in (1, 2, 2, 1, 3):
        hub.deliver(ev(n))
    assert a.offsets == ["1-1", "1-2", "1-3"]
    assert hub.offset_of("chat:a") == "1-3"


def test_fan_out_passes_every_ephemeral_event() -> None:
    hub, a = Hub(), Recorder()
    hub.add("chat:a", a)
    join = Event("chat:a", None, '{"type":"join"}')
    hub.deliver(join)
    hub.deliver(join)
    assert a.events == [join, join]


def test_a_failing_sink_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    hub, after = Hub(), Recorder()

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    hub.add("chat:a", broken)
    hub.add("chat:a", after)
    with caplog.at_level(logging.ERROR, logger="broker.hub"):
        hub.deliver(ev(1))
    assert after.offsets == ["1-1"]
    assert "sink failed" in caplog.text


def test_a_sink_may_leave_during_fan_out_without_disturbing_it() -> None:
    hub, b = Hub(), Recorder()

    def leaving(event: Event) -> None:
        hub.remove("chat:a", leaving)

    hub.add("chat:a", leaving)
    hub.add("chat:a", b)
    hub.deliver(ev(1))
    hub.deliver(ev(2))
    assert b.offsets == ["1-1", "1-2"]
    assert hub.count("chat:a") == 1


def test_a_paused_channel_buffers_then_resumes_with_the_replay_first_and_no_duplicate() -> None:
    hub, a = Hub(), Recorder()
    hub.add("chat:a", a)
    hub.deliver(ev(1))
    hub.pause("chat:a")
    hub.deliver(ev(3))
    hub.deliver(ev(4))
    assert a.offsets == ["1-1"]
    hub.resume("chat:a", [ev(1), ev(2), ev(3)])
    assert a.offsets == ["1-1", "1-2", "1-3", "1-4"]
    hub.deliver(ev(4))
    hub.deliver(ev(5))
    assert a.offsets == ["1-1", "1-2", "1-3", "1-4", "1-5"]


def test_a_paused_channel_keeps_at_most_its_pause_limit() -> None:
    hub, a = Hub(pause_limit=2), Recorder()
    hub.add("chat:a", a)
    hub.pause("chat:a")
    for n in (1, 2, 3):
        hub.deliver(ev(n))
    hub.resume("chat:a", [])
    assert a.offsets == ["1-1", "1-2"]


def test_resuming_a_channel_that_was_not_paused_does_nothing() -> None:
    hub, a = Hub(), Recorder()
    hub.add("chat:a", a)
    hub.resume("chat:a", [ev(1)])
    assert a.events == []


def test_pausing_only_affects_channels_with_sinks() -> None:
    hub, a = Hub(), Recorder()
    hub.pause("chat:a")
    hub.add("chat:a", a)
    hub.deliver(ev(1))
    assert a.offsets == ["1-1"]


def test_the_last_sink_leaving_forgets_the_channel_position() -> None:
    hub, a = Hub(), Recorder()
    hub.add("chat:a", a)
    hub.deliver(ev(5))
    hub.remove("chat:a", a)
    hub.add("chat:a", a)
    assert hub.position("chat:a") is None
    hub.deliver(ev(1))
    assert a.offsets == ["1-5", "1-1"]


def test_a_noted_position_does_not_hide_a_live_event_from_a_sink_that_read_history_earlier() -> None:
    # Two subscribers read history around a publish of 1-2: the first read saw
    # only 1-1, the second saw 1-2 and noted it before the PUBLISH of 1-2 came in.
    # The first subscriber still needs 1-2 live.
    hub, early, late = Hub(), Recorder(), Recorder()
    hub.add("chat:a", early)
    hub.add("chat:a", late)
    hub.note_position("chat:a", (1, 2))
    hub.note_position("chat:a", (1, 1))
    hub.deliver(ev(2))
    assert early.offsets == ["1-2"]


def test_a_reconnect_replays_from_the_lowest_noted_position_until_something_is_delivered() -> None:
    hub, a = Hub(), Recorder()
    hub.add("chat:a", a)
    hub.note_position("chat:a", (1, 7))
    hub.note_position("chat:a", (1, 4))
    hub.note_position("chat:a", (1, 9))
    assert hub.position("chat:a") == (1, 4)
    hub.deliver(ev(8))
    assert hub.position("chat:a") == (1, 8)


def test_a_position_noted_for_a_channel_without_sinks_is_ignored() -> None:
    hub = Hub()
    hub.note_position("chat:a", (1, 4))
    assert hub.position("chat:a") is None
