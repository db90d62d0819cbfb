"""Sharded pub/sub on Redis Cluster 7: SSUBSCRIBE over one connection per master that owns a wanted name.

redis-py supplies the slot map, node discovery and connection classes; the rest
is here (why: docs/topologies.md). Each master's :class:`NodeLink` has its own
reader task, so a stalled node stalls nobody else. Subscribes of one loop turn
are batched into one write per node. An unsolicited ``sunsubscribe`` (slot
moved), a broken link or a probe that did not come back (an SPUBLISH to this
replica's control channel in a slot of that node, every ``probe_s``) reports
the names lost, refreshes the slot map, re-subscribes them on their owner and
reports them restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError, ResponseError

from broker.cluster_connect import master_of_slot
from broker.cluster_link import SMESSAGE, SSUBSCRIBE, SUNSUBSCRIBE, NodeLink, fail_future, probe_channel_for
from broker.errors import REDIS_FAILURES, Unavailable
from broker.pubsub import backoff_delay
from broker.slot_layout import LayoutStats, SlotLayout
from broker.transport import OnLost, OnMessage, OnRestored, guarded

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 5.0
REFRESH_TIMEOUT_S = 5.0
#: how long start() waits for the slot map before the replica serves anyway (not ready), as on one server
START_WAIT_S = 2.0
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0


class NodeLinkFailed(Exception):
    """The link's connection broke, or its probe did not come back."""


class _Rejected(Exception):
    """Redis answered an SSUBSCRIBE with an error (MOVED, CLUSTERDOWN...)."""


class ClusterPubSub(LayoutStats):
    """A :class:`broker.transport.PubSubTransport` over Redis Cluster's sharded pub/sub."""

    def __init__(
        self,
        cluster: RedisCluster,
        *,
        control: str,
        probe_s: float,
        on_message: OnMessage,
        on_lost: OnLost,
        on_restored: OnRestored,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
        client_name: str | None = None,
    ) -> None:
        """Same arguments as the standalone ``broker.pubsub.PubSubLink``; ``control`` is this replica's
        control channel name (``PREFIX:replica:ID``), without a hash tag: the probe adds one per node.
        ``client_name``: CLIENT SETNAME of every pub/sub connection (no spaces)."""
        if "{" in control:
            raise ValueError("the control channel must not carry a hash tag")
        self._cluster = cluster
        self._control = control
        self._probe_s = probe_s
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._confirm_timeout_s = confirm_timeout_s
        self._client_name = client_name
        self._wanted: set[str] = set()
        self._links: dict[str, NodeLink] = {}
        self._where: dict[str, NodeLink] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._batches: dict[str, dict[str, asyncio.Future[None]]] = {}
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._to_restore: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._healer: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._started = False
        self.reconnects = 0
        self._layout = SlotLayout(cluster.nodes_manager)

    # -- the interface --------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._started and not self._to_restore

    def links(self) -> dict[str, int]:
        """node name -> names subscribed on it: one entry per pub/sub connection (for metrics and tests)."""
        return {name: len(link.confirmed) for name, link in self._links.items()}

    async def start(self, wait_s: float = START_WAIT_S) -> None:
        """Load the slot map, waiting up to ``wait_s``. While no seed answers the transport keeps trying
        in the background and is not ``ready`` (a replica may start before its Redis, as on one server)."""
        self._prober = asyncio.create_task(self._probe_loop(), name="herald-cluster-probe")
        await asyncio.wait({self._spawn(self._load())}, timeout=wait_s)

    async def _load(self) -> None:
        attempt = 0
        while not await self._refresh(self._cluster.initialize):
            await asyncio.sleep(backoff_delay(attempt, BACKOFF_BASE_S, BACKOFF_CAP_S))
            attempt += 1
        self._started = True

    async def stop(self) -> None:
        self._started = False
        tasks = [t for t in (self._prober, self._healer, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for link in list(self._links.values()):
            await self._close(link)

    async def subscribe(self, names: Sequence[str]) -> None:
        if not self._started:
            raise Unavailable("redis cluster is unavailable (no slot map yet)")
        added = [name for name in names if name not in self._wanted]
        self._wanted.update(names)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._confirm_timeout_s
        try:
            for _attempt in range(3):
                todo = [name for name in names if not self._is_confirmed(name)]
                if not todo:
                    return
                # shield: a confirmation is shared (another caller, the healer); a timeout here must not cancel it
                results = await asyncio.wait_for(
                    asyncio.gather(*(asyncio.shield(self._request(name)) for name in todo), return_exceptions=True),
                    max(0.0, deadline - loop.time()),
                )
                failures = [r for r in results if isinstance(r, BaseException)]
                if not failures:
                    return
                if not all(isinstance(f, _Rejected) for f in failures):
                    # The owner may be dead and the slot map stale: refresh it for the caller's retry.
                    self._spawn(self._refresh())
                    raise Unavailable("redis cluster is unavailable") from failures[0]
                await self._refresh()  # MOVED & co: the slot map is stale
            raise Unavailable("redis cluster keeps moving these channels")
        except (TimeoutError, *REDIS_FAILURES) as exc:
            self._wanted.difference_update(n for n in added if not self._is_confirmed(n))
            raise Unavailable("redis cluster is unavailable") from exc
        except Unavailable:
            self._wanted.difference_update(n for n in added if not self._is_confirmed(n))
            raise

    async def unsubscribe(self, names: Sequence[str]) -> None:
        by_link: dict[NodeLink, list[str]] = {}
        for name in names:
            self._wanted.discard(name)
            self._to_restore.discard(name)
            link = self._where.pop(name, None)
            if link is not None:
                link.assigned.discard(name)
                by_link.setdefault(link, []).append(name)
        for link, gone in by_link.items():
            if not link.assigned:
                await self._close(link)  # the connection's last name: drop the connection instead
                continue
            with contextlib.suppress(RedisError, OSError):
                # A failed SUNSUBSCRIBE is harmless: nothing re-subscribes an unwanted name.
                await link.send(SUNSUBSCRIBE, gone)

    # -- subscribing: batched per node, confirmed per name ------------------------------

    def _is_confirmed(self, name: str) -> bool:
        link = self._where.get(name)
        return link is not None and name in link.confirmed

    def _owner(self, name: str) -> ClusterNode:
        return master_of_slot(self._cluster, key_slot(name.encode()))

    def _request(self, name: str) -> asyncio.Future[None]:
        """The future of ``name``'s confirmation, joining this loop turn's batch for its node."""
        future = self._inflight.get(name)
        if future is not None and not future.done():
            return future
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        try:
            node = self._owner(name)
        except REDIS_FAILURES as exc:  # slot not covered (mid-failover)
            future.set_exception(_Rejected(str(exc)))
            return future
        self._inflight[name] = future
        batch = self._batches.setdefault(node.name, {})
        if not batch:
            self._spawn(self._flush(node))
        batch[name] = future
        return future

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _flush(self, node: ClusterNode) -> None:
        try:
            link = await self._link(node)
        except (*REDIS_FAILURES, TimeoutError, NodeLinkFailed) as exc:
            for future in self._batches.pop(node.name, {}).values():
                fail_future(future, exc)
            return
        batch = self._batches.pop(node.name, {})
        names = [name for name, future in batch.items() if not future.done()]
        for name in names:
            if (old := self._where.get(name)) is not None and old is not link:
                old.assigned.discard(name)
                old.confirmed.discard(name)
                self._close_if_idle(old)
            self._where[name] = link
            link.assigned.add(name)
        try:
            await link.send(SSUBSCRIBE, names)
        except (RedisError, OSError) as exc:
            self._fail_link(link, exc)

    async def _link(self, node: ClusterNode) -> NodeLink:
        """The node's link, connected and its probe channel subscribed; one connect per node at a time."""
        lock = self._connecting.setdefault(node.name, asyncio.Lock())
        async with lock:
            link = self._links.get(node.name)
            if link is not None and not link.closed:
                return link
            probe = probe_channel_for(self._control, self._cluster.nodes_manager.slots_cache, node)
            if probe is None:
                raise NodeLinkFailed(f"{node.name} owns no slot")
            link = await NodeLink.open(node, probe, self._confirm_timeout_s, self._client_name)
            link.start_reading(self._dispatch, self._rejected, self._fail_link)
            confirmed = asyncio.get_running_loop().create_future()
            self._inflight[link.probe_channel] = confirmed
            try:
                await link.send(SSUBSCRIBE, [link.probe_channel])
                await asyncio.wait_for(confirmed, self._confirm_timeout_s)
            except BaseException:
                link.closed = True
                await self._close(link)
                raise
            self._links[node.name] = link
            return link

    def _dispatch(self, link: NodeLink, reply: Any) -> None:
        kind, channel_raw, payload = reply
        channel = channel_raw.decode()
        if kind == SMESSAGE:
            if channel == link.probe_channel:
                link.probe_seen = int(payload)
            elif channel in self._wanted:
                guarded(self._on_message, channel, payload)
        elif kind == SSUBSCRIBE:
            link.answered(kind, channel)
            if channel != link.probe_channel:
                link.confirmed.add(channel)
            if (future := self._inflight.pop(channel, None)) is not None and not future.done():
                future.set_result(None)
        elif kind == SUNSUBSCRIBE:
            if link.answered(kind, channel):
                link.confirmed.discard(channel)
            else:
                self._moved_away(link, channel)

    def _rejected(self, link: NodeLink, exc: ResponseError) -> None:
        """An error reply answers the oldest command still waiting: all of its names failed."""
        if not link.pending:
            log.warning("unexpected error reply on the pub/sub link to %s: %s", link.node.name, exc)
            return
        command = link.pending.popleft()
        for name in command.waiting:
            if self._where.get(name) is link:
                del self._where[name]
            link.assigned.discard(name)
            if (future := self._inflight.pop(name, None)) is not None:
                fail_future(future, _Rejected(str(exc)))

    def _moved_away(self, link: NodeLink, channel: str) -> None:
        """Redis dropped ``channel`` on its own: its slot left this node."""
        if channel == link.probe_channel:
            self._fail_link(link, NodeLinkFailed(f"probe channel's slot left {link.node.name}"))
            return
        link.confirmed.discard(channel)
        link.assigned.discard(channel)
        if self._where.get(channel) is link:
            del self._where[channel]
        if channel in self._wanted:
            log.info("pub/sub channel %s left %s (slot migrated); re-subscribing", channel, link.node.name)
            self._lose([channel])
        self._close_if_idle(link)

    def _close_if_idle(self, link: NodeLink) -> None:
        """A link whose names all moved elsewhere is closed: connections only to masters that own a name."""
        if not link.assigned and not link.closed:
            link.closed = True
            self._spawn(self._close(link))

    # -- losing and restoring -----------------------------------------------------------

    def _fail_link(self, link: NodeLink, exc: BaseException) -> None:
        if link.closed:
            return
        link.closed = True
        if self._links.get(link.node.name) is link:
            del self._links[link.node.name]
        self.reconnects += 1
        log.warning("pub/sub link to %s lost (%s); re-subscribing its channels", link.node.name, exc)
        for command in link.pending:
            for name in command.waiting:
                if (future := self._inflight.pop(name, None)) is not None:
                    fail_future(future, exc)
        lost = [name for name in link.confirmed if name in self._wanted]
        for name in link.assigned:
            if self._where.get(name) is link:
                del self._where[name]
        link.assigned.clear()
        link.confirmed.clear()
        self._spawn(self._close(link))
        if lost:
            self._lose(lost)

    def _lose(self, names: list[str]) -> None:
        self._to_restore.update(names)
        guarded(self._on_lost, sorted(names))
        if self._healer is None or self._healer.done():
            self._healer = asyncio.create_task(self._heal(), name="herald-cluster-heal")

    async def _heal(self) -> None:
        """Refresh the slot map and re-subscribe lost names on their owners until all are back."""
        attempt = 0
        while self._to_restore:
            await self._refresh()
            names = sorted(self._to_restore & self._wanted)
            self._to_restore.intersection_update(self._wanted)
            results = await asyncio.gather(
                *(asyncio.wait_for(asyncio.shield(self._request(name)), self._confirm_timeout_s) for name in names),
                return_exceptions=True,
            )
            back = [n for n, r in zip(names, results, strict=True) if not isinstance(r, BaseException)]
            back = [n for n in back if n in self._to_restore and n in self._wanted]
            self._to_restore.difference_update(back)
            if back:
                attempt = 0
                log.info("pub/sub re-subscribed %d channel(s)", len(back))
                guarded(self._on_restored, back)
            elif self._to_restore:
                await asyncio.sleep(backoff_delay(attempt, BACKOFF_BASE_S, BACKOFF_CAP_S))
                attempt += 1

    async def _refresh(self, load: Callable[[], Awaitable[Any]] | None = None) -> bool:
        """Reload the slot map (or first ``load`` the client); False when no node answered."""
        try:
            await asyncio.wait_for((load or self._cluster.nodes_manager.initialize)(), REFRESH_TIMEOUT_S)
        except (*REDIS_FAILURES, TimeoutError):
            return False
        self._layout.observe()
        return True

    # -- liveness -------------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._probe_s)
            for link in list(self._links.values()):
                if link.probe_seen < link.probe_sent:
                    self._fail_link(link, NodeLinkFailed(f"probe not back within {self._probe_s} s"))
                    continue
                link.probe_sent += 1
                self._spawn(self._probe(link, link.probe_sent))

    async def _probe(self, link: NodeLink, token: int) -> None:
        try:
            await asyncio.wait_for(
                self._cluster.execute_command("SPUBLISH", link.probe_channel, token, target_nodes=link.node),
                self._probe_s,
            )
        except (*REDIS_FAILURES, TimeoutError) as exc:
            self._fail_link(link, exc)

    async def _close(self, link: NodeLink) -> None:
        link.closed = True
        if self._links.get(link.node.name) is link:
            del self._links[link.node.name]
        await link.shut()
