"""Running ``lua/publish.lua``: one EVALSHA per publish, concurrent publishes share a round trip.

Under load many sockets publish at once. Sent one by one, each EVALSHA pays
redis-py's whole per-command path (pool checkout, timeouts, a read); here the
publishes waiting at the same moment go out as one pipeline, still exactly
one EVALSHA each, in arrival order (so offsets follow arrival order). A lone
publish waits one event-loop turn longer, nothing more.

With ``min_replicas_ack`` = N >= 1 (SPEC §9) the pipeline ends with ``WAIT N
timeout``, on the same connection and in the same round trip: a publish is
acknowledged only if N replicas hold it, else ``NotConfirmed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as redis
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import NoScriptError, RedisError

from broker.errors import NotConfirmed, OutcomeUnknown, Unavailable
from broker.script_wire import ScriptWire

#: most publishes one pipeline carries; a longer queue is sent as several
BATCH_LIMIT = 256

#: told a call's outcome: the script's result and None, or None and why it failed
Then = Callable[[Any, BaseException | None], None]

log = logging.getLogger(__name__)


class _Waiter(Protocol):
    """How a queued call is completed: an ``asyncio.Future`` (``run``) or a ``_Then`` (``submit``)."""

    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class _Then:
    """Completes a call by calling ``then`` at once, in the sender's own step: no future, no loop turn in
    between, so a socket's ``ack`` is written in the same turn as the event its publish announced (the
    two arrive from Redis together) and the two leave as one ``send()`` (``api.ws.coalesce``)."""

    __slots__ = ("_done", "_then")

    def __init__(self, then: Then) -> None:
        self._then = then
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self._call(result, None)

    def set_exception(self, exception: BaseException, /) -> None:
        self._call(None, exception)

    def _call(self, result: Any, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._then(result, error)
        except Exception:  # the caller's bug: the batch's other calls are still completed
            log.exception("a publish's completion failed")


_Call = tuple[list[str], list[Any], _Waiter]


class Publisher:
    def __init__(self, client: redis.Redis, source: str, min_replicas_ack: int = 0, ack_timeout_ms: int = 500) -> None:
        self._client = client
        self._script = client.register_script(source)
        self._min_replicas_ack = min_replicas_ack
        self._ack_timeout_ms = ack_timeout_ms
        self._waiting: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None
        self._wire = ScriptWire(client)

    async def run(self, keys: list[str], args: list[Any]) -> Any:
        """The script's result for these keys and arguments; ``Unavailable`` when Redis cannot be reached."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(keys, args, future)
        return await future

    def submit(self, keys: list[str], args: list[Any], then: Then) -> None:
        """``run`` without a coroutine or a future: ``then(result, None)`` or ``then(None, error)`` (the same
        errors) is called from the sender as soon as the reply is read. A socket's publish takes this path."""
        self._queue(keys, args, _Then(then))

    def _queue(self, keys: list[str], args: list[Any], waiter: _Waiter) -> None:
        self._waiting.append((keys, args, waiter))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="herald-publisher")

    async def _send_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:BATCH_LIMIT], self._waiting[BATCH_LIMIT:]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Call]) -> None:
        try:
            results, acked = await self._pipeline(batch)
            missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if missing:  # Redis restarted or flushed its scripts: nothing of those ran, so run them again
                await self._client.script_load(self._script.script)
                again, acked_again = await self._pipeline([batch[i] for i in missing])
                for i, result in zip(missing, again, strict=True):
                    results[i] = result
                    acked[i] = acked_again[0]
        except (RedisError, OSError) as exc:
            self._fail(batch, _failure(exc))
            return
        except BaseException:
            self._fail(batch, OutcomeUnknown("the publisher stopped mid-publish: the outcome is unknown"))
            raise
        for i, ((_, _, future), result) in enumerate(zip(batch, results, strict=True)):
            if future.done():
                continue
            if isinstance(result, (RedisError, OSError)):
                future.set_exception(Unavailable(f"redis refused the publish: {result}"))
            elif acked[i] < self._min_replicas_ack:
                future.set_exception(NotConfirmed(result, acked[i], self._min_replicas_ack))
            else:
                future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Call], error: Exception) -> None:
        for _, _, future in batch:
            if not future.done():
                future.set_exception(error)

    async def _pipeline(self, batch: list[_Call]) -> tuple[list[Any], list[int]]:
        """Each call's result (errors as values) and how many replicas confirmed it (0 without WAIT)."""
        sha = self._script.sha
        commands: list[tuple[Any, ...]] = [("EVALSHA", sha, len(keys), *keys, *args) for keys, args, _ in batch]
        if self._min_replicas_ack:
            # WAIT counts the replicas holding this connection's writes so far: every script above.
            commands.append(("WAIT", self._min_replicas_ack, self._ack_timeout_ms))
        replies = await self._wire.call(commands)  # one write, one round trip (broker.script_wire)
        if not self._min_replicas_ack:
            return replies, [0] * len(batch)
        acked = replies.pop()
        return replies, [0 if isinstance(acked, BaseException) else int(acked)] * len(batch)


def _failure(exc: BaseException) -> Unavailable:
    """What a failed round trip means for its publishes: refused before anything was sent, or unknown.

    Once a command may have reached Redis (a read timed out, the connection broke mid-reply) the
    script may have run: saying "not published" would invite a retry that duplicates it.
    """
    text = str(exc)
    if isinstance(exc, MasterNotFoundError):  # asked of the sentinels, before anything was sent
        return Unavailable("redis is unavailable: no master (failover in progress)")
    if "No connection available" in text or "connecting to" in text or "Connection refused" in text:
        return Unavailable("redis is unavailable")
    return OutcomeUnknown(
        "redis did not answer: the publish may or may not have happened"
        " (retry with the same idempotency key to be safe)"
    )
