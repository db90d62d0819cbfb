"""Which master owns each hash slot, as this replica last saw it: how many masters, and how often it changed.

redis-py's ``NodesManager`` rebuilds its slot map on a refresh (after a MOVED, a failed node, or the
pub/sub healer's request) into a new ``slots_cache`` object. Comparing the owner of every slot with the
previous map tells a real change (a failover, a migrated slot) from a refresh that found all as it was.
Only a new map object is compared, so looking often costs nothing.
"""

from __future__ import annotations

from typing import Any

SLOTS = 16384


class SlotLayout:
    def __init__(self, nodes_manager: Any) -> None:
        self._nodes_manager = nodes_manager
        self._seen: object = None
        self._owners: tuple[str, ...] = ()
        self._changes = 0

    @property
    def changes(self) -> int:
        """Changes seen after the first map: failovers and slot moves."""
        self.observe()
        return self._changes

    @property
    def masters(self) -> int:
        """Masters that own at least one slot (0 before the first map)."""
        self.observe()
        return len(set(self._owners))

    def observe(self) -> None:
        """Compare the client's current slot map with the last one seen."""
        cache = self._nodes_manager.slots_cache
        if cache is self._seen or not cache:
            return
        self._seen = cache
        owners = tuple(cache[slot][0].name if cache.get(slot) else "" for slot in range(SLOTS))
        if self._owners and owners != self._owners:
            self._changes += 1
        self._owners = owners


class LayoutStats:
    """A transport's ``nodes`` and ``topology_changes`` (``broker.transport.PubSubTransport``), read from
    the ``SlotLayout`` it keeps."""

    _layout: SlotLayout

    @property
    def nodes(self) -> int:
        return self._layout.masters

    @property
    def topology_changes(self) -> int:
        return self._layout.changes
