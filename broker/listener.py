"""The replica's one pub/sub connection.

* A channel is SUBSCRIBEd while at least one local sink wants it. Counting and
  registering happen under a per-channel lock *before* awaiting Redis, and are
  undone if Redis fails (broadcaster's race, fixed as centrifuge does).
* A subscribe returns only once Redis confirmed it, so a history read that
  follows cannot miss an event published in between.
* One task reads with ``get_message(timeout=...)`` (``listen()`` exits when
  nothing is subscribed). On a connection error it marks the replica not
  ready, reconnects with capped exponential backoff and jitter, re-subscribes
  every channel that still has sinks, and replays each channel's gap from its
  stream, so local clients miss nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from broker.errors import Unavailable
from broker.hub import Hub
from broker.keys import ChannelKeys, channel_of_pubsub
from broker.types import Event, Offset, Sink, parse_offset

log = logging.getLogger(__name__)

ReplayReader = Callable[[str, Offset], Awaitable[list[Event]]]

CONFIRM_TIMEOUT_S = 5.0
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 5.0


def backoff_delay(attempt: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Full-jitter capped exponential backoff."""
    return random.uniform(0, min(cap, base * 2**attempt))


class Listener:
    def __init__(self, client: redis.Redis, hub: Hub, prefix: str, replica_id: str, replay: ReplayReader) -> None:
        self._client = client
        self._hub = hub
        self._prefix = prefix
        self._control = f"{prefix}:replica:{replica_id}"
        self._replay = replay
        self._pubsub: Any = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._names: dict[bytes, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._replays: set[asyncio.Task[None]] = set()
        self.reconnects = 0

    @property
    def ready(self) -> bool:
        return self._connected.is_set()

    async def start(self, wait_s: float = 2.0) -> None:
        self._task = asyncio.create_task(self._run(), name="herald-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), wait_s)

    async def stop(self) -> None:
        for task in (self._task, *self._replays):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._close_pubsub()

    # -- ref-counted subscriptions -------------------------------------------------

    @contextlib.asynccontextmanager
    async def _channel_lock(self, channel: str) -> AsyncIterator[None]:
        self._lock_users[channel] = self._lock_users.get(channel, 0) + 1
        lock = self._locks.setdefault(channel, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            self._lock_users[channel] -= 1
            if not self._lock_users[channel]:
                del self._lock_users[channel], self._locks[channel]

    async def attach(self, channel: str, sink: Sink) -> None:
        """Register ``sink``; SUBSCRIBE (and wait for Redis to confirm) when it is the channel's first."""
        async with self._channel_lock(channel):
            if not self._hub.add(channel, sink):
                return
            try:
                if not self.ready:
                    raise Unavailable("redis is unavailable")
                await self._subscribe(channel)
            except (RedisError, OSError, TimeoutError, Unavailable) as exc:
                self._hub.remove(channel, sink)
                raise Unavailable("redis is unavailable") from exc

    async def detach(self, channel: str, sink: Sink) -> None:
        async with self._channel_lock(channel):
            # Not "and self.ready": a reconnect in progress may already have re-subscribed this channel.
            if self._hub.remove(channel, sink) and self._pubsub is not None:
                # A failed UNSUBSCRIBE is harmless: the reconnect subscribes only channels with sinks.
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(ChannelKeys.of(self._prefix, channel).pubsub)

    async def _subscribe(self, channel: str) -> None:
        name = ChannelKeys.of(self._prefix, channel).pubsub
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[name] = confirmed
        try:
            await self._pubsub.subscribe(name)
            await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_TIMEOUT_S)
        finally:
            if self._confirmations.get(name) is confirmed:
                del self._confirmations[name]

    # -- the read loop -------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._connect()
                attempt = 0
                await self._read_forever()
            except (RedisError, OSError) as exc:
                if self.ready:
                    log.warning("redis pub/sub connection lost (%s); reconnecting", exc)
                    self.reconnects += 1
                self._connected.clear()
                for channel in self._hub.channels():
                    self._hub.pause(channel)
                self._fail_confirmations(exc)
                await self._close_pubsub()
                await asyncio.sleep(backoff_delay(attempt))
                attempt += 1

    async def _connect(self) -> None:
        pubsub = self._client.pubsub()
        # Always subscribed to our own control channel: keeps the connection in
        # pub/sub mode so concurrent SUBSCRIBEs never race a health-check PING.
        await pubsub.subscribe(self._control)
        self._pubsub = pubsub
        channels = self._hub.channels()
        if channels:
            for channel in channels:
                self._hub.pause(channel)
            await pubsub.subscribe(*(ChannelKeys.of(self._prefix, c).pubsub for c in channels))
        self._connected.set()
        if self.reconnects:
            # Idle pooled connections predate the outage and are likely dead: the first command on
            # each would fail (a 503 right after Redis is back). Drop them; in-use ones fail on their own.
            with contextlib.suppress(RedisError, OSError):
                await self._client.connection_pool.disconnect(inuse_connections=False)
        if channels:
            log.info("redis pub/sub reconnected; replaying %d channel(s)", len(channels))
        for channel in channels:
            # Ordered after our SUBSCRIBEs on the same connection, so the read below sees everything.
            task = asyncio.create_task(self._replay_gap(channel))
            self._replays.add(task)
            task.add_done_callback(self._replays.discard)

    async def _replay_gap(self, channel: str) -> None:
        # The channel stays paused until this succeeds, so a failed read is retried while pub/sub is
        # up; once it is down again, the next reconnect starts a new replay of this channel.
        attempt = 0
        while self.ready and self._hub.count(channel):
            position = self._hub.position(channel)
            since = "0" if position is None else f"{position[0]}-{position[1]}"
            try:
                events = await self._replay(channel, since)
            except (RedisError, OSError, Unavailable) as exc:
                log.info("replaying %s after reconnect failed (%s); retrying", channel, exc)
                await asyncio.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            self._hub.resume(channel, events)
            return

    async def _read_forever(self) -> None:
        pubsub = self._pubsub
        hub = self._hub
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            kind = message["type"]
            if kind == "message" or kind == b"message":
                event = self._decode(message["channel"], message["data"])
                if event is not None:
                    hub.deliver(event)
            elif kind in ("subscribe", b"subscribe"):
                raw = message["channel"]
                name = raw.decode() if isinstance(raw, bytes) else raw
                confirmed = self._confirmations.pop(name, None)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)

    def _decode(self, raw_channel: bytes, raw: bytes) -> Event | None:
        channel = self._names.get(raw_channel)
        if channel is None:
            channel = channel_of_pubsub(self._prefix, raw_channel.decode())
            if channel is None:
                return None
            if len(self._names) > 100_000:
                self._names.clear()
            self._names[raw_channel] = channel
        head, _, body = raw.partition(b"\n")
        data = body.decode()
        if not head:
            return Event(channel, None, data)
        offset = head.decode()
        return Event(channel, offset, data, parse_offset(offset))

    def _fail_confirmations(self, exc: BaseException) -> None:
        for future in self._confirmations.values():
            if not future.done():
                future.set_exception(Unavailable(str(exc)))
        self._confirmations.clear()

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
