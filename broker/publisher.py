"""Running ``lua/publish.lua``: one EVALSHA per publish, concurrent publishes share a round trip.

Under load many sockets publish at once. Sent one by one, each EVALSHA pays
redis-py's whole per-command path (pool checkout, timeouts, a read); here the
publishes waiting at the same moment go out as one pipeline, still exactly
one EVALSHA each, in arrival order (so offsets follow arrival order). A lone
publish waits one event-loop turn longer, nothing more.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis
from redis.exceptions import NoScriptError, RedisError
from redis.sentinel import MasterNotFoundError

from broker.errors import OutcomeUnknown, Unavailable

#: most publishes one pipeline carries; a longer queue is sent as several
BATCH_LIMIT = 256

_Call = tuple[list[str], list[Any], "asyncio.Future[Any]"]


class Publisher:
    def __init__(self, client: redis.Redis, source: str) -> None:
        self._client = client
        self._script = client.register_script(source)
        self._waiting: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(self, keys: list[str], args: list[Any]) -> Any:
        """The script's result for these keys and arguments; ``Unavailable`` when Redis cannot be reached."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((keys, args, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="herald-publisher")
        return await future

    async def _send_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:BATCH_LIMIT], self._waiting[BATCH_LIMIT:]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Call]) -> None:
        try:
            results = await self._pipeline(batch)
            missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if missing:  # Redis restarted or flushed its scripts: nothing of those ran, so run them again
                await self._client.script_load(self._script.script)
                for i, result in zip(missing, await self._pipeline([batch[i] for i in missing]), strict=True):
                    results[i] = result
        except (RedisError, OSError) as exc:
            self._fail(batch, _failure(exc))
            return
        except BaseException:
            self._fail(batch, OutcomeUnknown("the publisher stopped mid-publish: the outcome is unknown"))
            raise
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, (RedisError, OSError)):
                future.set_exception(Unavailable(f"redis refused the publish: {result}"))
            else:
                future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Call], error: Exception) -> None:
        for _, _, future in batch:
            if not future.done():
                future.set_exception(error)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        sha = self._script.sha
        if len(batch) == 1:
            keys, args, _ = batch[0]
            try:
                return [await self._client.evalsha(sha, len(keys), *keys, *args)]
            except NoScriptError as exc:
                return [exc]
        pipe = self._client.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))


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
