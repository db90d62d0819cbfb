"""What one running app holds: built by the lifespan (``api.app.build_state``), reached through ``api.deps``
by the HTTP routes and through ``websocket.app.state.herald`` by the socket endpoints. The services in it
take only what they use, never the whole state."""

from __future__ import annotations

from dataclasses import dataclass

from api.auth import Auth
from api.books import Books
from api.chat import Chat
from api.graphql.service import GraphQLService
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
    metrics: Metrics
    #: open server-sent event streams (api.sse)
    sse: SseStreams
    books: Books
    chat: Chat
    graphql: GraphQLService
