"""What the client raises, one tree::

HeraldClientError
├── AuthRefused        the server refused the token (403 handshake, close 1008 or 4403): no reconnect
├── ProtocolError      the server closed for a reason retrying cannot fix (4400, 4406, 4409, 1009 …)
├── RequestRefused     a request was answered with an error frame that retrying cannot fix
├── GraphQLError       a subscription was answered with GraphQL errors
└── Unavailable        not published (Redis down, retries exhausted)
    └── OutcomeUnknown maybe published: retries ran out while the outcome was unknown
"""

from __future__ import annotations

from typing import Any


class HeraldClientError(Exception):
    """Root of every error the client raises on purpose."""


class AuthRefused(HeraldClientError):
    """The server refused this token; give the client a new one (``herald.token = …``) and reopen."""

    def __init__(self, detail: str, code: int | None = None) -> None:
        super().__init__(detail)
        self.code = code


class ProtocolError(HeraldClientError):
    """The server closed the connection with a code that says retrying would fail the same way."""

    def __init__(self, detail: str, code: int | None = None) -> None:
        super().__init__(detail)
        self.code = code


class RequestRefused(HeraldClientError):
    """An ``error`` frame answered a request (``bad_request``, ``forbidden``, or ``rate_limited`` after retries)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class GraphQLError(HeraldClientError):
    """A subscription's ``error`` message: the operation was refused (validation, auth, limits)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(error.get("message", error)) for error in errors) or "GraphQL error")
        self.errors = errors


class Unavailable(HeraldClientError):
    """The server could not publish (Redis unavailable) and retries ran out: nothing was published."""


class OutcomeUnknown(Unavailable):
    """Retries ran out while the last attempt's outcome was unknown: the message may have been published.

    Retrying later with the same idempotency key (``key=``) is safe within the server's
    ``HERALD_IDEMPOTENCY_TTL_S``: it publishes at most once.
    """
