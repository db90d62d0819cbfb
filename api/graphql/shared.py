"""One execution per event: identical subscriptions on a replica share one source stream.

A ``Stream`` is one broker subscription plus one GraphQL execution per event; its result JSON is handed, as
the same ``str``, to every member, and each member's machine wraps it in its own frame by concatenation.
Fan-out is a plain loop with no ``await`` (members push into their connection's bounded queue).

Shared streams are keyed by ``Key``: the document text, the operation name, the variables (canonical JSON)
and the principal's room restriction (the ``channels`` claim). An operation whose ``since`` is not null is
not shared: its replay starts at its own offset and is executed for that client alone (a *private* stream).

Streams open in a task of their own (shielded from the joiner), so a joiner cancelled mid-subscribe cannot
leak a broker subscription; the last member to leave retires the stream at once (it stops counting and gets
no more events) and its broker subscription is closed in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from api.graphql.schema import Source
from broker import Broker, Event, Subscription

log = logging.getLogger(__name__)

Key = tuple[str, str | None, str, tuple[str, ...] | None]
Deliver = Callable[[str], None]
Run = Callable[[Any], str]  # root value -> result JSON (one execution)

RECOVERED_FALSE = ',"extensions":{"recovered":false}}'


class FellBehind(Exception):
    """The subscriber did not read its replay in time."""


def not_recovered(result_json: str) -> str:
    """Add ``"extensions":{"recovered":false}`` to a result object (ours never carry extensions)."""
    return result_json[:-1] + RECOVERED_FALSE


class Stream:
    __slots__ = ("gap", "key", "members", "opening", "run", "source")

    def __init__(self, key: Key | None, source: Source, run: Run) -> None:
        self.key = key
        self.source = source
        self.run = run
        self.members: dict[Hashable, Deliver] = {}
        self.opening: asyncio.Task[Subscription] | None = None
        #: stored events were lost for this stream: its next result says ``recovered: false``
        self.gap = False

    def on_event(self, event: Event) -> None:
        """The broker sink: execute once, hand the same JSON to every member. Never awaits."""
        if event.gap:
            self.gap = True
            return
        root = event.memo(self.source.root)
        if root is None:
            return
        result_json = self.run(root)
        if self.gap:
            self.gap = False
            result_json = not_recovered(result_json)
        for deliver in tuple(self.members.values()):
            try:
                deliver(result_json)
            except Exception:
                log.exception("graphql subscriber failed on %s", event.channel)


class Membership:
    """One operation's place in a stream; ``leave()`` is synchronous and idempotent."""

    __slots__ = ("_left", "_live", "_streams", "stream")

    def __init__(self, streams: Streams, stream: Stream) -> None:
        self._streams = streams
        self.stream = stream
        self._left = self._live = False

    def live(self) -> None:
        """Count this operation in the ``subscriptions`` gauge: from now on it misses no event."""
        if not (self._left or self._live):
            self._live = True
            self._streams.subscriptions += 1

    def leave(self) -> None:
        if self._left:
            return
        self._left = True
        if self._live:
            self._streams.subscriptions -= 1
        self.stream.members.pop(self, None)
        if not self.stream.members:
            self._streams.retire(self.stream)


class Streams:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._shared: dict[Key, Stream] = {}
        self._private: set[Stream] = set()
        self._closing: set[asyncio.Task[None]] = set()
        #: live subscription operations (members of any stream, once it is open)
        self.subscriptions = 0

    def count(self) -> int:
        """Distinct executions serving the subscriptions: shared streams plus private ones."""
        return len(self._shared) + len(self._private)

    async def join(self, key: Key, source: Source, run: Run, deliver: Deliver) -> Membership:
        """Become a member of the stream of ``key``, opening it if this is its first member."""
        stream = self._shared.get(key)
        if stream is None:
            stream = self._shared[key] = Stream(key, source, run)
            stream.opening = asyncio.ensure_future(self._open_shared(stream))
        membership = Membership(self, stream)
        stream.members[membership] = deliver
        assert stream.opening is not None
        try:
            await asyncio.shield(stream.opening)
        except BaseException:
            membership.leave()
            raise
        membership.live()
        return membership

    async def _open_shared(self, stream: Stream) -> Subscription:
        try:
            subscription = await self._broker.subscribe(stream.source.channel, stream.on_event)
            # without since there is nothing to replay but what arrived while subscribing
            async for events in subscription.replay():
                for event in events:
                    stream.on_event(event)
        except BaseException:
            self._forget(stream)
            raise
        return subscription

    async def open_private(
        self, source: Source, run: Run, deliver: Deliver, replay: Callable[[str], Awaitable[None]]
    ) -> Membership:
        """A stream of its own from ``source.since``: replay (awaiting ``replay`` per result), then live."""
        stream = Stream(None, source, run)
        self._private.add(stream)
        stream.opening = asyncio.ensure_future(self._broker.subscribe(source.channel, stream.on_event, source.since))
        membership = Membership(self, stream)
        try:
            subscription = await asyncio.shield(stream.opening)
            stream.gap = subscription.recovered is False
            async for events in subscription.replay():
                for event in events:
                    if event.gap:
                        stream.gap = True
                        continue
                    root = event.memo(source.root)
                    if root is not None:
                        result_json = run(root)
                        if stream.gap:
                            stream.gap, result_json = False, not_recovered(result_json)
                        await replay(result_json)
            # live from here (no await since the replay ended): a pending gap marks the next result
            stream.members[membership] = deliver
        except BaseException:
            membership.leave()
            raise
        membership.live()
        return membership

    def retire(self, stream: Stream) -> None:
        """``stream`` has no member left: stop counting it and close its broker subscription."""
        self._forget(stream)
        task = asyncio.ensure_future(self._close(stream))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _forget(self, stream: Stream) -> None:
        if stream.key is not None and self._shared.get(stream.key) is stream:
            del self._shared[stream.key]
        self._private.discard(stream)

    async def _close(self, stream: Stream) -> None:
        if stream.opening is None:
            return
        try:
            subscription = await stream.opening
        except Exception:
            return  # it never opened (or already closed itself)
        with contextlib.suppress(Exception):
            await subscription.close()
