"""herald-client: asyncio client for Herald chat rooms and GraphQL subscriptions (SPEC §11).

Remembers the last offset of every room and subscription, reconnects with full-jitter
backoff and resumes with ``since``, so the application sees every event once, in order;
a resume the server could not complete is reported as a ``{"type": "gap"}`` frame.
"""

from herald_client.client import HeraldClient
from herald_client.core import ReconnectPolicy
from herald_client.errors import (
    AuthRefused,
    GraphQLError,
    HeraldClientError,
    OutcomeUnknown,
    ProtocolError,
    RequestRefused,
    Unavailable,
)
from herald_client.room import Room

__all__ = [
    "AuthRefused",
    "GraphQLError",
    "HeraldClient",
    "HeraldClientError",
    "OutcomeUnknown",
    "ProtocolError",
    "ReconnectPolicy",
    "RequestRefused",
    "Room",
    "Unavailable",
]
