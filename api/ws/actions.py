"""What a sans-I/O protocol machine (chat, graphql-transport-ws, graphql-ws) asks its runner to do with the
socket. The machines return these and await nothing; the runners (``api.ws.chat_endpoint``,
``api.graphql.session``) carry them out in order. Machine-specific actions live with their machine."""

from __future__ import annotations

from dataclasses import dataclass

from api.errors import CloseCode


@dataclass(frozen=True, slots=True)
class Send:
    """Send this text frame to this client only."""

    text: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket; the machine is finished afterwards."""

    code: CloseCode
    reason: str
