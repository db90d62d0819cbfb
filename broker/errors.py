"""Errors the broker raises. ``redis`` exceptions are converted here and nowhere else."""

from __future__ import annotations

from redis.exceptions import RedisClusterException, RedisError

#: what a failed Redis call raises: redis-py's errors (a cluster client's have a root of their own:
#: no seed reachable, slot not covered) and the network's
REDIS_FAILURES = (RedisError, RedisClusterException, OSError)


class BrokerError(Exception):
    """Root of the broker's errors."""


class Unavailable(BrokerError):
    """Redis cannot be reached (or refused the command): the operation did not happen."""


class OutcomeUnknown(Unavailable):
    """Redis stopped answering after a publish was sent: it may or may not have happened.

    Retrying with the same idempotency key is safe; without one it may duplicate the event.
    """


class NotConfirmed(OutcomeUnknown):
    """The script ran, but fewer replicas than ``HERALD_REDIS_MIN_REPLICAS_ACK`` confirmed it in time.

    An ``OutcomeUnknown``: the event is stored on the master and may be delivered, but a failover
    now could lose it, so it is not acknowledged (SPEC §9: 503 / ``unavailable``, "not confirmed").
    """

    def __init__(self, result: object, acked: int, wanted: int) -> None:
        super().__init__(
            f"published but not confirmed by {wanted} redis replica(s) in time ({acked} did):"
            " it may still be delivered (retry with the same idempotency key to be safe)"
        )
        self.result = result


class Duplicate(BrokerError):
    """The thing being stored already exists (a book with that ISBN); nothing was published."""
