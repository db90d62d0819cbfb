"""Local fan-out: channel -> the sinks of this replica.

``deliver`` is a plain function (websockets' ``broadcast()`` is the model):
one event, decoded once, handed to every sink with no ``await`` in the loop.
Sinks own bounded buffers; a full one is the sink's problem (it drops its
client with 1013), never the hub's. Positions, replays and gaps are
``broker.catchup``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from broker.types import Event, Sink

log = logging.getLogger(__name__)


Deliver = Callable[[Event], None]


class Hub:
    def __init__(self, wrap: Callable[[Deliver], Deliver] | None = None) -> None:
        self._sinks: dict[str, dict[Sink, None]] = {}
        # Snapshot per channel, rebuilt on change: sinks may come and go while we iterate.
        self._snapshots: dict[str, tuple[Sink, ...]] = {}
        #: hand an event to every local sink of its channel: ``_deliver``, or that wrapped once here (a
        #: tracing span), so the hot path checks nothing per event
        self.deliver: Deliver = self._deliver if wrap is None else wrap(self._deliver)

    def add(self, channel: str, sink: Sink) -> bool:
        """Register ``sink``; True when it is the channel's first."""
        sinks = self._sinks.setdefault(channel, {})
        sinks[sink] = None
        self._snapshots[channel] = tuple(sinks)
        return len(sinks) == 1

    def remove(self, channel: str, sink: Sink) -> bool:
        """Unregister ``sink``; True when it was the channel's last."""
        sinks = self._sinks.get(channel)
        if sinks is None or sink not in sinks:
            return False
        del sinks[sink]
        if sinks:
            self._snapshots[channel] = tuple(sinks)
            return False
        del self._sinks[channel], self._snapshots[channel]
        return True

    def count(self, channel: str) -> int:
        return len(self._sinks.get(channel, ()))

    def _deliver(self, event: Event) -> None:
        """Hand ``event`` to every local sink of its channel."""
        for sink in self._snapshots.get(event.channel, ()):
            try:
                sink(event)
            except Exception:
                log.exception("sink failed on %s", event.channel)
