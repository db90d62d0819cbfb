"""One sharded pub/sub connection to one cluster master: its writes, its reader task, its reply order.

Used by ``broker.cluster_pubsub``, which decides what each link carries. A link
knows which names it carries and which Redis confirmed; it matches every reply
to the command that asked for it (a FIFO), so the transport can tell an answer
from an unsolicited ``sunsubscribe`` and an error reply from a broken link.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import ResponseError

from broker.replies import BatchReader

SSUBSCRIBE = b"ssubscribe"
SUNSUBSCRIBE = b"sunsubscribe"
SMESSAGE = b"smessage"
#: names tried when looking for a probe channel in a slot a node owns (each try hits ~1/masters)
PROBE_NAME_TRIES = 100_000

OnReply = Callable[["NodeLink", Any], None]
OnErrorReply = Callable[["NodeLink", ResponseError], None]
OnBroken = Callable[["NodeLink", BaseException], None]


@dataclass(slots=True)
class Command:
    kind: bytes  # SSUBSCRIBE | SUNSUBSCRIBE
    waiting: set[str]


@dataclass(eq=False, slots=True)
class NodeLink:
    node: ClusterNode
    conn: AbstractConnection
    probe_channel: str
    reader: asyncio.Task[None] | None = None
    #: wanted names this link carries or is subscribing
    assigned: set[str] = field(default_factory=set)
    confirmed: set[str] = field(default_factory=set)
    pending: deque[Command] = field(default_factory=deque)
    probe_sent: int = 0
    probe_seen: int = 0
    closed: bool = False

    @classmethod
    async def open(
        cls, node: ClusterNode, probe_channel: str, timeout_s: float, client_name: str | None = None
    ) -> NodeLink:
        # RESP2: pub/sub replies come back from read_response as plain arrays. Under RESP3 (redis-py 8's
        # default) they are pushes, each also handed to a handler that formats it for a debug log.
        kwargs = {**node.connection_kwargs, "decode_responses": False, "protocol": 2}
        if client_name is not None:  # CLIENT LIST tells an operator whose pub/sub connection this is
            kwargs["client_name"] = client_name
        conn: AbstractConnection = node.connection_class(**kwargs)
        await asyncio.wait_for(conn.connect(), timeout_s)  # type: ignore[no-untyped-call]
        return cls(node, conn, probe_channel)

    def start_reading(self, on_reply: OnReply, on_error_reply: OnErrorReply, on_broken: OnBroken) -> None:
        self.reader = asyncio.create_task(
            self._read(on_reply, on_error_reply, on_broken), name=f"herald-pubsub-{self.node.name}"
        )

    async def _read(self, on_reply: OnReply, on_error_reply: OnErrorReply, on_broken: OnBroken) -> None:
        batch = BatchReader(self.conn)  # every reply of one socket read per wake-up (broker.replies)
        try:
            while True:
                try:
                    replies = await batch.read()
                except ResponseError as exc:  # (one reply at a time: read_response raises them)
                    on_error_reply(self, exc)
                    continue
                for reply in replies:
                    if isinstance(reply, ResponseError):
                        on_error_reply(self, reply)
                    else:
                        on_reply(self, reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection lost (or a reply we cannot parse): the link is gone
            on_broken(self, exc)

    async def send(self, kind: bytes, names: list[str]) -> None:
        """One write for all ``names``: one command per slot (SSUBSCRIBE refuses cross-slot names)."""
        by_slot: dict[int, list[str]] = {}
        for name in names:
            by_slot.setdefault(key_slot(name.encode()), []).append(name)
        commands = [(kind.decode().upper(), *group) for group in by_slot.values()]
        for group in by_slot.values():
            self.pending.append(Command(kind, set(group)))
        await self.conn.send_packed_command(self.conn.pack_commands(commands), check_health=False)

    def answered(self, kind: bytes, channel: str) -> bool:
        """Match a reply to the oldest command of its kind waiting for ``channel``."""
        for command in self.pending:
            if command.kind == kind and channel in command.waiting:
                command.waiting.discard(channel)
                while self.pending and not self.pending[0].waiting:
                    self.pending.popleft()
                return True
        return False

    async def shut(self) -> None:
        self.closed = True
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        with contextlib.suppress(Exception):
            await self.conn.disconnect(nowait=True)


def probe_channel_for(control: str, slots: dict[int, list[ClusterNode]], node: ClusterNode) -> str | None:
    """A control channel of this replica that hashes to a slot ``node`` owns now (None: it owns none)."""
    for i in range(PROBE_NAME_TRIES):
        name = f"{control}:{{probe{i}}}"
        owners = slots.get(key_slot(name.encode()))
        if owners and owners[0].name == node.name:
            return name
    return None


def fail_future(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        future.exception()  # retrieved: an abandoned confirmation is not an "exception never retrieved"
