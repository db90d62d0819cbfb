"""What Redis saw during a workload: commands per publish, and the pub/sub connections the replicas held.

Two of issue 14's targets are about Redis itself (still exactly one command per publish; at most one pub/sub
connection per replica), so the bench asks the target's private Redis (``INFO commandstats``, ``CLIENT
LIST TYPE pubsub``) before and after the traffic instead of trusting the code.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from redis.exceptions import RedisError

#: the commands that run a script (what runs inside one is counted by Redis too, under its own name)
SCRIPT_COMMANDS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall")


def command_counts(ports: list[int]) -> dict[str, int] | None:
    """Calls per command name so far, summed over the masters (None: no Redis to ask)."""
    if not ports:
        return None
    total: dict[str, int] = {}
    with contextlib.suppress(RedisError, OSError):
        for port in ports:
            with redis.Redis(port=port, socket_timeout=5) as client:
                stats: dict[str, Any] = client.info("commandstats")
            for name, value in stats.items():
                key = name.removeprefix("cmdstat_")
                total[key] = total.get(key, 0) + int(value["calls"])
        return total
    return None


def pubsub_connections(ports: list[int]) -> int | None:
    """Connections in pub/sub mode on the masters, summed (a cluster replica holds one per master it needs)."""
    if not ports:
        return None
    with contextlib.suppress(RedisError, OSError):
        count = 0
        for port in ports:
            with redis.Redis(port=port, socket_timeout=5) as client:
                count += len(client.client_list(_type="pubsub"))
        return count
    return None


def per_publish(before: dict[str, int] | None, after: dict[str, int] | None, published: int) -> dict[str, Any]:
    """Publish-script calls per published message during the traffic, and every command's count (scripts'
    inner commands included, as Redis counts them). ``None`` figures when Redis could not be asked.

    Herald's presence script (refreshes run every ``HERALD_PRESENCE_TTL_S``/3 per room) is also an EVALSHA;
    it always runs exactly one ZRANGEBYSCORE and the publish script none, so those are taken off."""
    if before is None or after is None or not published:
        return {"redis_script_calls_per_publish": None, "redis_commands": None}
    delta = {name: after[name] - before.get(name, 0) for name in after}
    delta = {name: n for name, n in delta.items() if n > 0 and name != "info"}
    return {"redis_script_calls_per_publish": publish_scripts(delta) / published, "redis_commands": delta}


def publish_scripts(commands: dict[str, int]) -> int:
    """Script calls that were not Herald's presence script (see ``per_publish``)."""
    return sum(commands.get(name, 0) for name in SCRIPT_COMMANDS) - commands.get("zrangebyscore", 0)
