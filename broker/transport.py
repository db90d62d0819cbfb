"""The pub/sub transport interface, shared by the standalone listener and the cluster one (SPEC §8, §9).

A transport keeps a set of pub/sub names subscribed and tells its owner when
some stop being subscribed and when they are subscribed again, so that the
owner (the broker's hub and catch-up) can replay each name's gap from its
stream. It does no ref-counting: the owner subscribes a name once and
serialises subscribe/unsubscribe of one name (a per-channel lock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: (pub/sub channel name, raw payload); called synchronously by a reader task: must not await
OnMessage = Callable[[str, bytes], None]
#: these names are no longer subscribed (link lost, slot moved, probe failed)
OnLost = Callable[[list[str]], None]
#: these names are subscribed again, confirmed by Redis: the owner replays their gap
OnRestored = Callable[[list[str]], None]


class PubSubTransport(Protocol):
    #: links lost and re-established
    reconnects: int

    @property
    def topology_changes(self) -> int:
        """Failovers and slot moves followed: a new master behind Sentinel; a changed slot map on a cluster."""

    @property
    def nodes(self) -> int:
        """Redis masters this transport knows: 1 for one server or Sentinel, the slot map's for a cluster."""

    def links(self) -> dict[str, int]:
        """node (``host:port``) -> names subscribed there: one entry per open pub/sub connection."""

    @property
    def ready(self) -> bool:
        """Every needed link is up and every wanted name is subscribed."""

    async def start(self, wait_s: float = 2.0) -> None: ...

    async def stop(self) -> None: ...

    async def subscribe(self, names: Sequence[str]) -> None:
        """Returns once Redis confirmed every name; raises ``broker.errors.Unavailable``."""

    async def unsubscribe(self, names: Sequence[str]) -> None: ...


def guarded(callback: Callable[..., None], *args: Any) -> None:
    """A failing callback is the owner's bug: logged, never the end of a link's reader or of its healer."""
    try:
        callback(*args)
    except Exception:
        log.exception("pub/sub callback %r failed", callback)
