"""What one running app holds: built by the lifespan, reached through ``api.deps``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.auth import Auth
from api.limits import WriteLimits
from api.metrics import Metrics
from api.presence import RoomPresence
from api.settings import Settings
from api.sse.registry import SseStreams
from api.ws.registry import Connections
from broker import Broker


@dataclass
class AppState:
    settings: Settings
    broker: Broker
    auth: Auth
    connections: Connections
    presence: RoomPresence
    #: REST writes and GraphQL mutations, per writer (SPEC §12)
    write_limits: WriteLimits
    metrics: Metrics = field(default_factory=Metrics)
    #: open server-sent event streams (api.sse)
    sse: SseStreams = field(default_factory=SseStreams)
    #: GraphQL subscription manager (api.graphql), set by the app factory
    graphql: Any = None
