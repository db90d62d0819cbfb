"""The history -> live handoff, as in centrifuge's recovery/sync.go.

A new subscription is registered *before* history is read, so nothing
published meanwhile is missed; live events that arrive during the read are
buffered, and the merge drops every event at or below the last one already
delivered. Ephemeral events (no offset) pass through in arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable

from broker.types import Event, ParsedOffset, Sink


def merge(position: ParsedOffset | None, *batches: Iterable[Event]) -> tuple[list[Event], ParsedOffset | None]:
    """Events of ``batches`` (in order) newer than ``position``, and the new position.

    Pure: used for a subscriber's replay + buffer and for a channel's
    replay after a Redis reconnect.
    """
    out: list[Event] = []
    for batch in batches:
        for event in batch:
            if event.position is not None:
                if position is not None and event.position <= position:
                    continue
                position = event.position
            out.append(event)
    return out, position


class RecoveringSink:
    """Wraps a sink: buffers (bounded) until ``go_live``, then forwards only events newer than the replay."""

    __slots__ = ("_buffer", "_limit", "_target", "overflowed", "position")

    def __init__(self, target: Sink, limit: int) -> None:
        self._target = target
        self._limit = limit
        self._buffer: list[Event] | None = []
        self.overflowed = False
        self.position: ParsedOffset | None = None

    def __call__(self, event: Event) -> None:
        buffer = self._buffer
        if buffer is not None:
            if len(buffer) >= self._limit:
                self.overflowed = True
            else:
                buffer.append(event)
            return
        # Even live, the first events may duplicate the replay: a pub/sub message
        # can reach us after the history read that already contained it.
        position = event.position
        if position is not None:
            if self.position is not None and position <= self.position:
                return
            self.position = position
        self._target(event)

    def go_live(self, replayed: Iterable[Event]) -> bool:
        """Forward the buffered events newer than ``replayed``; False if any were dropped."""
        _, self.position = merge(self.position, replayed)
        buffered, self._buffer = self._buffer or [], None
        events, self.position = merge(self.position, buffered)
        for event in events:
            self._target(event)
        return not self.overflowed
