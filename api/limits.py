"""Writes per user, across surfaces: one token bucket per writer for REST and GraphQL mutations.

Chat frames have their own per-socket bucket (``ChatProtocol``); everything else that publishes —
REST writes, GraphQL mutations over HTTP and over either WebSocket protocol — draws from the
writer's one bucket here, so a user cannot walk around the chat limit through another door
(SPEC §12). A writer is the token's subject when auth is on, else the client's address (a trusted
proxy's ``X-Forwarded-For`` already applied). Buckets are per replica and bounded in number: the
least recently used is forgotten first (it would be full again by then anyway, or nearly).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from api.errors import RateLimited
from api.ws.chat_protocol import TokenBucket

#: writers remembered at once; beyond it the least recently seen is forgotten
MAX_WRITERS = 100_000


class WriteLimits:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic, max_writers: int = MAX_WRITERS
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_writers
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, writer: str) -> None:
        """Spend one write of ``writer``'s; ``RateLimited`` (with when to retry) when none is left."""
        bucket = self._buckets.get(writer)
        if bucket is None:
            bucket = self._buckets[writer] = TokenBucket(self.rate, self.burst, self._clock)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(writer)
        if not bucket.take():
            raise RateLimited(
                f"too many writes; at most {self.rate:g}/s (HERALD_HTTP_RATE_LIMIT)",
                retry_after=max(1, math.ceil(1 / self.rate)),
            )


def writer_key(user: str, client_host: str | None, auth_enabled: bool) -> str:
    """Whose bucket a write draws from: the token's subject, or (anonymous access) the client address."""
    return f"user:{user}" if auth_enabled else f"addr:{client_host or 'unknown'}"
