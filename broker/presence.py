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
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from broker.errors import Unavailable
from broker.keys import ChannelKeys

SEPARATOR = "\0"


@dataclass(slots=True)
class Change:
    """Outcome of an enter/exit: whether it changed the user's presence, and users whose entries expired."""

    changed: bool
    departed: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Presence:
    def __init__(self, client: redis.Redis, prefix: str, replica_id: str, ttl_s: float = 30.0) -> None:
        self._prefix = prefix
        self._replica = replica_id
        self.ttl_s = ttl_s
        self._script = client.register_script(resources.files("broker").joinpath("lua/presence.lua").read_text())
        # channel -> members this replica holds, for the refresh loop
        self._local: dict[str, set[str]] = {}
        self._refresher: asyncio.Task[None] | None = None

    def _member(self, user: str, connection: str) -> str:
        return f"{user}{SEPARATOR}{self._replica}:{connection}"

    async def _call(self, channel: str, *args: Any) -> list[str]:
        keys = ChannelKeys.of(self._prefix, channel)
        now_ms = int(time.time() * 1000)
        try:
            reply = await self._script(keys=[keys.presence, keys.presence + ":lex"], args=[args[0], now_ms, *args[1:]])
        except (RedisError, OSError) as exc:
            raise Unavailable("redis is unavailable") from exc
        return [_text(item) for item in reply]

    def _expiry_ms(self) -> int:
        return int((time.time() + self.ttl_s) * 1000)

    @staticmethod
    def _change(reply: list[str]) -> Change:
        departed = reply[2:] if len(reply) > 1 else []
        return Change(changed=reply[0] == "1", departed=departed)

    async def enter(self, channel: str, user: str, connection: str) -> Change:
        member = self._member(user, connection)
        self._local.setdefault(channel, set()).add(member)
        return self._change(await self._call(channel, "enter", member, user, self._expiry_ms()))

    async def exit(self, channel: str, user: str, connection: str) -> Change:
        member = self._member(user, connection)
        members = self._local.get(channel)
        if members is not None:
            members.discard(member)
            if not members:
                del self._local[channel]
        return self._change(await self._call(channel, "exit", member, user))

    async def users(self, channel: str) -> list[str]:
        """Live users of the channel, distinct and sorted."""
        return (await self._call(channel, "list"))[1:]

    def start(self) -> None:
        self._refresher = asyncio.create_task(self._refresh_forever(), name="herald-presence")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            for channel, members in list(self._local.items()):
                with contextlib.suppress(Unavailable):
                    await self._call(channel, "refresh", self._expiry_ms(), *members)
