"""Local fan-out: channel -> the sinks of this replica.

``deliver`` is a plain function (websockets' ``broadcast()`` is the model):
one event, decoded once, handed to every sink with no ``await`` in the loop.
Sinks own bounded queues; a full one is the sink's problem (it drops its
client with 1013), never the hub's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from broker.recovery import merge
from broker.types import Event, Offset, ParsedOffset, Sink

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, pause_limit: int = 100_000) -> None:
        self._sinks: dict[str, dict[Sink, None]] = {}
        # Snapshot per channel, rebuilt on change: sinks may come and go while we iterate.
        self._snapshots: dict[str, tuple[Sink, ...]] = {}
        self._positions: dict[str, ParsedOffset] = {}
        # Where subscribers' history reads found a channel not yet delivered to: only where a
        # reconnect's replay may start, never a reason to drop a live event (an earlier reader needs it).
        self._floors: dict[str, ParsedOffset] = {}
        self._paused: dict[str, list[Event]] = {}
        self._pause_limit = pause_limit
        self.delivered = 0

    def add(self, channel: str, sink: Sink) -> bool:
        """Register ``sink``; True when it is the channel's first."""
        sinks = self._sinks.setdefault(channel, {})
        sinks[sink] = None
        self._snapshots[channel] = tuple(sinks)
        return len(sinks) == 1

    def remove(self, channel: str, sink: Sink) -> bool:
        """Unregister ``sink``; True when the channel has no sink left."""
        sinks = self._sinks.get(channel)
        if sinks is None or sink not in sinks:
            return False
        del sinks[sink]
        if sinks:
            self._snapshots[channel] = tuple(sinks)
            return False
        del self._sinks[channel], self._snapshots[channel]
        self._positions.pop(channel, None)
        self._floors.pop(channel, None)
        self._paused.pop(channel, None)
        return True

    def channels(self) -> list[str]:
        return list(self._sinks)

    def count(self, channel: str) -> int:
        return len(self._sinks.get(channel, ()))

    def position(self, channel: str) -> ParsedOffset | None:
        position = self._positions.get(channel)
        return self._floors.get(channel) if position is None else position

    def note_position(self, channel: str, position: ParsedOffset | None) -> None:
        """Record where the channel stood when first subscribed, so a reconnect knows what to replay."""
        if position is not None and channel in self._sinks and channel not in self._positions:
            floor = self._floors.get(channel)
            self._floors[channel] = position if floor is None else min(floor, position)

    def deliver(self, event: Event) -> int:
        """Hand ``event`` to every local sink of its channel; returns how many got it."""
        channel = event.channel
        paused = self._paused.get(channel)
        if paused is not None:
            if len(paused) < self._pause_limit:
                paused.append(event)
            return 0
        position = event.position
        if position is not None:
            last = self._positions.get(channel)
            if last is not None and position <= last:
                return 0  # already delivered: replayed after a reconnect
            self._positions[channel] = position
        sinks = self._snapshots.get(channel, ())
        for sink in sinks:
            try:
                sink(event)
            except Exception:
                log.exception("sink failed on %s", channel)
        self.delivered += len(sinks)
        return len(sinks)

    def pause(self, channel: str) -> None:
        """Buffer the channel's live events until ``resume`` (used while replaying a reconnect gap)."""
        if channel in self._sinks:
            self._paused.setdefault(channel, [])

    def resume(self, channel: str, replay: Iterable[Event]) -> None:
        """Deliver ``replay`` then the buffered events, each once, in order."""
        buffered = self._paused.pop(channel, None)
        if buffered is None:
            return
        events, _ = merge(self._positions.get(channel), replay, buffered)
        for event in events:
            self.deliver(event)

    def offset_of(self, channel: str) -> Offset | None:
        position = self._positions.get(channel)
        return None if position is None else f"{position[0]}-{position[1]}"
