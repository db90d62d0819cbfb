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
    assert hub.count("chat:a") == 0


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
    hub.deliver(event)
    assert a.events == [event] and b.events == [event]
    assert a.events[0] is b.events[0]
    assert other.events == []


def test_an_event_for_a_channel_without_sinks_goes_nowhere() -> None:
    hub, a = Hub(), Recorder()
    hub.add("chat:b", a)
    hub.deliver(ev(1))
    assert a.events == []


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
