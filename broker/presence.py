"""Cluster-wide presence per channel, kept in Redis by ``lua/presence.lua``.

A member is one connection (``user`` + a connection id unique to this
replica); a user is present while any of their members lives. Entries carry
an expiry that this replica refreshes, so a replica that dies without
cleaning up drops out after ``ttl_s``, and the next operation on the channel
reports those users as departed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster

from broker.connect import text
from broker.errors import REDIS_FAILURES, Unavailable
from broker.facade import OnDeparted, PresenceChange, PresenceEntry
from broker.history import HistoryPage, PageQuery
from broker.keys import ChannelKeys

SEPARATOR = "\0"

log = logging.getLogger(__name__)


ScriptCall = Callable[[list[str], list[Any]], Awaitable[Any]]


def _registered(client: redis.Redis | RedisCluster) -> ScriptCall:
    script = client.register_script(resources.files("broker").joinpath("lua/presence.lua").read_text())

    async def run(keys: list[str], args: list[Any]) -> Any:
        return await script(keys=keys, args=args)

    return run


class Presence:
    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        prefix: str,
        replica_id: str,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        *,
        run: ScriptCall | None = None,
        announce: str = "PUBLISH",
    ) -> None:
        """``client``: a Redis client to register the script with, unless ``run`` (the topology's batching
        script runner for ``lua/presence.lua``, see ``broker.wiring``) runs it. ``announce``: the pub/sub
        command of join/leave frames (SPUBLISH on a cluster)."""
        self._prefix = prefix
        #: epoch seconds; expiries are compared in Redis against this replica's clock (a test passes its own)
        self._clock = clock
        self._replica = replica_id
        self.ttl_s = ttl_s
        self._announce = announce
        self._run: ScriptCall = run if run is not None else _registered(client)
        # channel -> members this replica holds, for the refresh loop
        self._local: dict[str, set[str]] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._on_departed: OnDeparted | None = None

    def _member(self, user: str, connection: str) -> str:
        return f"{user}{SEPARATOR}{self._replica}:{connection}"

    async def _call(self, channel: str, *args: Any) -> list[str]:
        return [text(item) for item in await self._script(ChannelKeys.of(self._prefix, channel), [], list(args))]

    async def _script(self, keys: ChannelKeys, more_keys: list[str], args: list[Any]) -> Any:
        now_ms = int(self._clock() * 1000)
        try:
            return await self._run([keys.presence, keys.presence + ":lex", *more_keys], [args[0], now_ms, *args[1:]])
        except REDIS_FAILURES as exc:
            raise Unavailable("redis is unavailable") from exc

    def _expiry_ms(self) -> int:
        return int((self._clock() + self.ttl_s) * 1000)

    @staticmethod
    def _change(reply: list[str]) -> PresenceChange:
        departed = reply[2:] if len(reply) > 1 else []
        return PresenceChange(changed=reply[0] == "1", departed=departed)

    def _announcing(self, channel: str, frame: str | None) -> list[str]:
        if frame is None:
            return []
        return [ChannelKeys.of(self._prefix, channel).pubsub, self._announce, "\n" + frame]

    async def enter(self, channel: str, user: str, connection: str, announce: str | None = None) -> PresenceChange:
        """Record the connection; when it is the user's first, publish ``announce`` (an ephemeral frame) to the
        channel in the same script call."""
        member = self._member(user, connection)
        self._local.setdefault(channel, set()).add(member)
        extra = self._announcing(channel, announce)
        return self._change(await self._call(channel, "enter", member, user, self._expiry_ms(), *extra))

    async def enter_reading(self, entry: PresenceEntry, query: PageQuery) -> tuple[PresenceChange, HistoryPage]:
        """``enter`` and ``query``'s read in one script call: a subscriber's start (``RedisBroker.subscribe``).

        The channel's stream and meta share the presence keys' hash tag: on a cluster, one slot's master runs
        it. Raises ``Unavailable`` with the entry forgotten here (an ``OutcomeUnknown`` may have entered it).
        """
        keys = query.keys
        member = self._member(entry.user, entry.connection)
        local = self._local.setdefault(keys.channel, set())
        local.add(member)
        announce = self._announcing(keys.channel, entry.announce) or ["", "", ""]
        args = ["enter", member, entry.user, self._expiry_ms(), *announce, *query.script_args()]
        try:
            reply = list(await self._script(keys, [keys.stream, keys.meta], args))
        except BaseException:  # Unavailable, or cancelled: an entry that may exist then expires unrefreshed
            self._forget(keys.channel, member)  # else the refresh would keep an entry nobody exits
            raise
        page = query.parse_script(reply.pop(1))
        return self._change([text(item) for item in reply]), page

    async def exit(self, channel: str, user: str, connection: str, announce: str | None = None) -> PresenceChange:
        """Drop the connection; when it was the user's last, publish ``announce`` in the same script call."""
        member = self._member(user, connection)
        self._forget(channel, member)
        return self._change(await self._call(channel, "exit", member, user, *self._announcing(channel, announce)))

    def _forget(self, channel: str, member: str) -> None:
        members = self._local.get(channel)
        if members is not None:
            members.discard(member)
            if not members:
                del self._local[channel]

    async def users(self, channel: str) -> list[str]:
        """Live users of the channel, distinct and sorted. Users this call purged go to ``on_departed``."""
        reply = (await self._call(channel, "list"))[1:]
        if "" not in reply:
            return reply
        cut = reply.index("")
        if self._on_departed is not None:
            await self._on_departed(channel, reply[cut + 1 :])
        return reply[:cut]

    def start(self, on_departed: OnDeparted | None = None) -> None:
        self._on_departed = on_departed
        self._refresher = asyncio.create_task(self._refresh_forever(), name="herald-presence")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher

    async def _refresh_forever(self) -> None:
        # The refresh also purges: users of a dead replica leave (and ``on_departed`` hears of it)
        # within ttl_s * 4/3 even if nobody else touches the room.
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            for channel, members in list(self._local.items()):
                try:
                    await self._refresh(channel, tuple(members))
                except Unavailable:
                    pass
                except Exception:
                    log.exception("presence refresh of %s failed", channel)

    async def _refresh(self, channel: str, members: tuple[str, ...]) -> None:
        change = self._change(await self._call(channel, "refresh", self._expiry_ms(), *members))
        # The refresh re-adds missing members (Redis may have lost them); one that exited while it
        # was in flight may have been re-added after its exit: remove it again.
        current = self._local.get(channel, set())
        for member in members:
            if member not in current:
                user = member.split(SEPARATOR)[0]
                change.departed += self._change(await self._call(channel, "exit", member, user)).departed
        if change.departed and self._on_departed is not None:
            await self._on_departed(channel, change.departed)
