"""The replica's pub/sub link to one Redis server: one connection, kept alive and honest.

* Subscriptions that arrive in the same loop turn go out as one SUBSCRIBE, and
  a subscribe returns once Redis confirmed it, so a history read that follows
  cannot miss an event published in between.
* A busy Redis is not a dead one: confirmations are awaited for as long as
  the link lives. The link is declared lost on a connection error, when the
  read task fails in any way, or when a probe (a PUBLISH to this replica's own
  control channel every ``probe_s``) does not come back in time — a link that
  stays open but stopped delivering is noticed.
* On loss, ``on_lost`` names every channel (their gap must be replayed) and
  pending subscribes fail as unavailable; the link reconnects with full-jitter
  backoff, SUBSCRIBEs everything again, and ``on_restored`` names each channel
  as Redis confirms it.

It knows channel *names* and raw payloads only; decoding and catch-up are the
listener's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from broker.connect import text
from broker.errors import Unavailable
from broker.replies import BatchReader

log = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes], None]
OnChannels = Callable[[list[str]], None]

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 5.0
UNAVAILABLE = "redis is unavailable"


def backoff_delay(attempt: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Full-jitter capped exponential backoff."""
    return random.uniform(0, min(cap, base * 2**attempt))


class LinkLost(Exception):
    """The link stopped delivering (a probe did not come back)."""


class PubSubLink:
    def __init__(
        self,
        client: redis.Redis,
        *,
        probe_client: redis.Redis,
        control: str,
        probe_s: float,
        on_message: OnMessage,
        on_lost: OnChannels,
        on_restored: OnChannels,
    ) -> None:
        self._client = client
        self._probe_client = probe_client
        self._control = control
        self._probe_s = probe_s
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._pubsub: Any = None
        self._wanted: set[str] = set()
        self._restoring: set[str] = set()
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._outbox: list[str] = []
        self._probe: str | None = None
        self._probe_seen = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        self.reconnects = 0
        #: times a (re)connection landed on another server than the last one (a Sentinel failover)
        self.topology_changes = 0
        self._address: str | None = None

    @property
    def nodes(self) -> int:
        return 1

    def links(self) -> dict[str, int]:
        """server address -> names subscribed on it: the one pub/sub connection, while it is up."""
        if not self.ready or self._address is None:
            return {}
        return {self._address: len(self._wanted)}

    @property
    def ready(self) -> bool:
        return self._connected.is_set()

    async def start(self, wait_s: float = 2.0) -> None:
        self._spawn()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), wait_s)

    def _spawn(self) -> None:
        if self._stopping:
            return
        self._task = asyncio.create_task(self._run(), name="herald-pubsub")
        self._task.add_done_callback(self._supervise)

    def _supervise(self, task: asyncio.Task[None]) -> None:
        # _run never returns on its own: a task that ended anyway must not leave the replica deaf and "ready".
        if self._stopping or task.cancelled():
            return
        log.error("pub/sub task ended unexpectedly (%r); restarting it", task.exception())
        self._lose(Unavailable(UNAVAILABLE))
        asyncio.get_running_loop().call_later(backoff_delay(3), self._spawn)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_pubsub()
        await self._probe_client.aclose()

    # -- subscribing ---------------------------------------------------------------------

    async def subscribe(self, names: Sequence[str]) -> None:
        """SUBSCRIBE ``names`` (batched with every other subscribe of this loop turn); returns once confirmed."""
        if not self.ready:
            raise Unavailable(UNAVAILABLE)
        loop = asyncio.get_running_loop()
        waits = []
        for name in names:
            self._wanted.add(name)
            future = self._confirmations.get(name)
            if future is None:
                future = self._confirmations[name] = loop.create_future()
                if not self._outbox:
                    loop.call_soon(self._flush)
                self._outbox.append(name)
            waits.append(future)
        await asyncio.gather(*(asyncio.shield(w) for w in waits))

    def _flush(self) -> None:
        names, self._outbox = self._outbox, []
        if names and self._pubsub is not None:
            task = asyncio.ensure_future(self._send_subscribe(self._pubsub, names))
            task.add_done_callback(_consume_result)

    async def _send_subscribe(self, pubsub: Any, names: list[str]) -> None:
        try:
            await pubsub.subscribe(*names)
        except (RedisError, OSError, RuntimeError) as exc:
            # the reader fails on the same connection and reconnects; these wait no longer
            self._fail(names, exc)

    async def unsubscribe(self, names: Sequence[str]) -> None:
        self._wanted.difference_update(names)
        self._restoring.difference_update(names)
        if self._pubsub is not None and names:
            # A failed UNSUBSCRIBE is harmless: a reconnect subscribes only what is wanted. (RuntimeError:
            # the transport closed under us as the link was being given up.)
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await self._pubsub.unsubscribe(*names)

    def _fail(self, names: Sequence[str], exc: BaseException) -> None:
        for name in names:
            future = self._confirmations.pop(name, None)
            if future is not None and not future.done():
                future.set_exception(Unavailable(f"{UNAVAILABLE} ({exc})"))

    # -- the link ------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._connect()
                attempt = 0
                await self._serve()
            except (RedisError, OSError, LinkLost) as exc:
                if self.ready:
                    log.warning("redis pub/sub link lost (%s); reconnecting", exc)
                self._lose(exc)
            except Exception as exc:  # a bug must cost a reconnect, never the replica's fan-out
                log.exception("redis pub/sub reader failed; reconnecting")
                self._lose(exc)
            await self._close_pubsub()
            await asyncio.sleep(backoff_delay(attempt))
            attempt += 1

    def _lose(self, exc: BaseException) -> None:
        was_ready = self.ready
        self._connected.clear()
        self._fail(list(self._confirmations), exc)
        self._outbox.clear()
        if was_ready:
            self.reconnects += 1
            if self._wanted:
                self._tell(self._on_lost, sorted(self._wanted))

    @staticmethod
    def _tell(callback: OnChannels, names: list[str]) -> None:
        try:
            callback(names)
        except Exception:  # the link's own bookkeeping must go on whatever a listener does
            log.exception("pub/sub listener failed on %d channel(s)", len(names))

    async def _connect(self) -> None:
        pubsub = self._client.pubsub()
        # Always subscribed to our own control channel: the probe's path, and it keeps the
        # connection in pub/sub mode so concurrent SUBSCRIBEs never race a health-check PING.
        self._restoring = set(self._wanted)
        await pubsub.subscribe(self._control, *sorted(self._restoring))
        self._pubsub = pubsub
        self._note_address(_address_of(pubsub.connection))
        if self.reconnects:
            # Idle pooled connections predate the outage and are likely dead: the first command on
            # each would fail (a 503 right after Redis is back). Drop them; in-use ones fail on their own.
            with contextlib.suppress(RedisError, OSError):
                await self._client.connection_pool.disconnect(inuse_connections=False)
            if self._restoring:
                log.info("redis pub/sub reconnected; replaying %d channel(s)", len(self._restoring))
        self._connected.set()

    def _note_address(self, address: str) -> None:
        # Behind Sentinel each connect asks for the master: another address means a failover was followed.
        if self._address is not None and address != self._address:
            self.topology_changes += 1
            log.info("redis pub/sub link moved from %s to %s", self._address, address)
        self._address = address

    async def _serve(self) -> None:
        reader = asyncio.create_task(self._read_forever(), name="herald-pubsub-reader")
        prober = asyncio.create_task(self._probe_forever(), name="herald-pubsub-probe")
        try:
            done, _ = await asyncio.wait((reader, prober), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise why the link ended
        finally:
            for task in (reader, prober):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._probe_s)
            self._probe = secrets.token_hex(8)
            self._probe_seen.clear()
            try:
                async with asyncio.timeout(self._probe_s):
                    await self._probe_client.publish(self._control, self._probe)
                    await self._probe_seen.wait()
            except TimeoutError as exc:
                raise LinkLost(f"probe not back within {self._probe_s:g} s") from exc

    async def _read_forever(self) -> None:
        pubsub = self._pubsub
        batch = BatchReader(pubsub.connection)
        if not batch.batched:  # the embedded server: redis-py's own reads, one message at a time
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._dispatch(message["type"], message["channel"], message["data"])
        while True:
            # every message already received, in one wake-up (see broker.replies)
            for reply in await batch.read():
                if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                    self._dispatch(b"message", reply[1], reply[2])
                elif isinstance(reply, RedisError):
                    raise reply  # a pub/sub connection has nothing to refuse: the link is in trouble
                else:  # (un)subscribe confirmations: redis-py's PubSub keeps its own books on them
                    message = await pubsub.handle_message(reply)
                    if message is not None:
                        self._dispatch(message["type"], message["channel"], message["data"])

    def _dispatch(self, kind: Any, channel: Any, data: Any) -> None:
        name = text(channel)
        if kind == b"message" or kind == "message":
            if name == self._control:
                if text(data) == self._probe:
                    self._probe_seen.set()
            else:
                self._on_message(name, data)
        elif text(kind) == "subscribe":
            self._confirmed(name)

    def _confirmed(self, name: str) -> None:
        future = self._confirmations.pop(name, None)
        if future is not None and not future.done():
            future.set_result(None)
        if name in self._restoring:
            self._restoring.discard(name)
            self._tell(self._on_restored, [name])

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


def _address_of(connection: Any) -> str:
    """``host:port`` of a connected redis-py connection; a unix socket's path; ``embedded`` for ``memory://``."""
    if type(connection).__module__.startswith("fakeredis"):
        return "embedded"
    host, port = getattr(connection, "host", None), getattr(connection, "port", None)
    if host is not None and port is not None:
        return f"{host}:{port}"
    return str(getattr(connection, "path", "unknown"))


def _consume_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
