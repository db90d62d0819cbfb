"""Room presence as clients see it: ``join``/``leave`` frames and the ``presence`` list.

The broker keeps the cluster-wide truth; this turns its "first connection" /
"last connection" answers into frames published to the room on every replica.
"""

from __future__ import annotations

import logging

from api.models import dumps, now
from broker import (
    Broker,
    Offset,
    OutcomeUnknown,
    PresenceChange,
    PresenceEntry,
    Sink,
    Subscription,
    Unavailable,
    chat_channel,
)

log = logging.getLogger(__name__)


def membership_frame(kind: str, room: str, user: str) -> str:
    return dumps({"type": kind, "room": room, "user": user, "ts": now()})


class RoomPresence:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._presence = broker.presence

    def start(self) -> None:
        self._presence.start(self._departed)

    async def stop(self) -> None:
        await self._presence.stop()

    async def subscribe(self, room: str, user: str, connection: str, sink: Sink, since: Offset | None) -> Subscription:
        """A chat subscriber's start: subscribe to the room and enter its presence in one round trip (the join
        frame goes out with it when this is the user's first connection). From here on the caller owns the entry:
        ``exit`` it whatever happens next (a failed welcome or replay included). Raises ``Unavailable``."""
        entry = PresenceEntry(user, connection, announce=membership_frame("join", room, user))
        try:
            subscription = await self._broker.subscribe(chat_channel(room), sink, since, presence=entry)
        except OutcomeUnknown:
            await self.exit(room, user, connection)  # the enter may have happened
            raise
        if subscription.presence is not None:
            await self._departed_in(room, subscription.presence)
        return subscription

    async def exit(self, room: str, user: str, connection: str) -> None:
        try:
            leave = membership_frame("leave", room, user)
            change = await self._presence.exit(chat_channel(room), user, connection, announce=leave)
            await self._departed_in(room, change)
        except Unavailable:
            log.warning("presence not cleared for %s in %s: its entry will expire", user, room)

    async def users(self, room: str) -> list[str]:
        channel = chat_channel(room)
        return await self._presence.users(channel)

    async def _departed(self, channel: str, users: list[str]) -> None:
        """Users of a replica that died without cleaning up: their entries expired; tell the room."""
        room = channel.removeprefix(chat_channel(""))
        for user in users:
            await self._broker.publish_ephemeral(channel, membership_frame("leave", room, user))

    async def _departed_in(self, room: str, change: PresenceChange) -> None:
        """Users whose entries the call purged (their replica died): rare, so a publish each."""
        channel = chat_channel(room)
        try:
            for departed in change.departed:
                await self._broker.publish_ephemeral(channel, membership_frame("leave", room, departed))
        except Unavailable:
            log.warning("leave of departed users not announced in %s: redis is unavailable", room)
