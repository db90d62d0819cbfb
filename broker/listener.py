"""Channels this replica listens to: ref-counted subscriptions, decoding, and gap replay.

* A channel is subscribed while at least one local sink wants it. Counting and
  registering happen under a per-channel lock *before* awaiting Redis, and are
  undone if Redis fails (broadcaster's race, fixed as centrifuge does).
* Every subscribed channel has a ``CatchUp`` at the replica's level: while the
  link is down its events wait, and when the link is back the channel's gap is
  read from the stream and fanned out, in pages, before the events that
  arrived meanwhile. If the stream no longer reaches the channel's position,
  the hub fans out a gap marker first: every local subscriber is told.
* What arrives from Redis is input too: a payload that does not decode is
  logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from broker.catchup import CatchUp, Read, replay_pages
from broker.errors import Unavailable
from broker.history import HistoryPage
from broker.hub import Hub
from broker.keys import ChannelKeys, channel_of_pubsub
from broker.pubsub import backoff_delay
from broker.transport import PubSubTransport
from broker.types import Event, ParsedOffset, Sink, parse_offset

log = logging.getLogger(__name__)

PageReader = Callable[[str, Read], Awaitable[HistoryPage]]
LinkFactory = Callable[["Listener"], PubSubTransport]

#: live events one channel buffers while its gap is replayed; more and the gap is re-read instead
CHANNEL_BUFFER = 10_000


class Listener:
    def __init__(self, hub: Hub, prefix: str, read_page: PageReader, link: LinkFactory) -> None:
        self._hub = hub
        self._prefix = prefix
        self._read_page = read_page
        self._channels: dict[str, CatchUp] = {}
        self._names: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}
        self._replays: dict[str, asyncio.Task[None]] = {}
        self.malformed = 0
        self.link = link(self)

    @property
    def ready(self) -> bool:
        return self.link.ready

    @property
    def reconnects(self) -> int:
        return self.link.reconnects

    def channels(self) -> list[str]:
        return list(self._channels)

    async def start(self) -> None:
        await self.link.start()

    async def stop(self) -> None:
        for task in list(self._replays.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.link.stop()

    # -- ref-counted subscriptions -------------------------------------------------------

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
        """Register ``sink``; subscribe (and wait for Redis to confirm) when it is the channel's first."""
        async with self._channel_lock(channel):
            if not self._hub.add(channel, sink):
                return
            name = ChannelKeys.of(self._prefix, channel).pubsub
            self._channels[channel] = CatchUp(self._hub.deliver, buffer_limit=CHANNEL_BUFFER, replaying=False)
            self._names[name] = channel
            try:
                await self.link.subscribe([name])
            except Unavailable:
                self._forget(channel, sink)
                await self.link.unsubscribe([name])  # else a reconnect would subscribe it for nobody
                raise

    async def detach(self, channel: str, sink: Sink) -> None:
        async with self._channel_lock(channel):
            if self._hub.remove(channel, sink):
                self._forget(channel, sink)
                await self.link.unsubscribe([ChannelKeys.of(self._prefix, channel).pubsub])

    def _forget(self, channel: str, sink: Sink) -> None:
        self._hub.remove(channel, sink)
        self._channels.pop(channel, None)
        self._names.pop(ChannelKeys.of(self._prefix, channel).pubsub, None)
        replay = self._replays.pop(channel, None)
        if replay is not None:
            replay.cancel()

    def note_floor(self, channel: str, position: ParsedOffset | None) -> None:
        """A subscriber's read found the channel's newest at ``position`` (see ``CatchUp.note_floor``)."""
        catchup = self._channels.get(channel)
        if catchup is not None:
            catchup.note_floor(position)

    # -- from the link ---------------------------------------------------------------------

    def on_message(self, name: str, raw: bytes) -> None:
        channel = self._names.get(name)
        if channel is None:
            return  # unsubscribed a moment ago
        try:
            event = decode(channel, raw)
        except ValueError as exc:  # UnicodeDecodeError included
            self.malformed += 1
            log.warning("skipped a malformed payload on %s (%s): %.80r", name, exc, raw)
            return
        self._channels[channel](event)

    def on_lost(self, names: list[str]) -> None:
        for name in names:
            channel = self._names.get(name) or channel_of_pubsub(self._prefix, name)
            catchup = self._channels.get(channel) if channel is not None else None
            if catchup is not None:
                catchup.pause()

    def on_restored(self, names: list[str]) -> None:
        for name in names:
            channel = self._names.get(name)
            catchup = self._channels.get(channel) if channel is not None else None
            if channel is None or catchup is None:
                continue
            # Re-subscribed just now: only a read that starts from here on can complete the replay
            # (a replay still running from an earlier restore sees this and reads on).
            catchup.pause()
            if channel not in self._replays:
                self._replays[channel] = asyncio.create_task(
                    self._replay_gap(channel, catchup), name=f"herald-replay-{channel}"
                )

    async def _replay_gap(self, channel: str, catchup: CatchUp) -> None:
        # The channel's events wait until this completes; a failed read is retried while the link is
        # up. Once it is down again, the next restore starts a new replay of this channel.
        attempt = 0
        deliver = self._hub.deliver
        try:
            while self.ready and self._channels.get(channel) is catchup:
                try:
                    async for events in replay_pages(catchup, lambda read: self._read_page(channel, read)):
                        for event in events:
                            deliver(event)
                    return
                except Unavailable as exc:
                    log.info("replaying %s after reconnect failed (%s); retrying", channel, exc)
                    await asyncio.sleep(backoff_delay(attempt))
                    attempt += 1
        finally:
            # synchronously with going live, so a restore that follows starts a new replay
            if self._replays.get(channel) is asyncio.current_task():
                del self._replays[channel]


def decode(channel: str, raw: bytes) -> Event:
    """``b"<offset>\\n<data>"`` (``b"\\n<frame>"`` for an ephemeral event) -> ``Event``; ``ValueError`` if malformed."""
    head, sep, body = raw.partition(b"\n")
    if not sep:
        raise ValueError("no offset line")
    data = body.decode()
    if not data.startswith("{"):
        raise ValueError("data is not a JSON object")
    if not head:
        return Event(channel, None, data)
    offset = head.decode()
    return Event(channel, offset, data, parse_offset(offset))
