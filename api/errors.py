"""Every code Herald puts on the wire, and the one exception tree behind them.

Close codes and error codes live here and nowhere else: other modules name
them (``CloseCode.TRY_AGAIN_LATER``), never spell the number.

Exception tree (translated only at the two edges: one FastAPI handler and one
WebSocket helper)::

    HeraldError
    ├── BadRequest      -> 422 / error frame "bad_request"
    ├── Unauthorized    -> 401
    ├── Forbidden       -> 403 / refused handshake
    ├── NotFound        -> 404
    ├── Conflict        -> 409
    ├── PayloadTooLarge -> 413
    ├── RateLimited     -> 429 with Retry-After / error frame "rate_limited"
    └── ServiceUnavailable -> 503 / error frame "unavailable" (broker.Unavailable is re-raised as this)
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class CloseCode(IntEnum):
    """WebSocket close codes (RFC 6455 plus the graphql-ws 44xx range)."""

    NORMAL = 1000
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    #: Herald's own: events this client should have had are gone; reconnect with since (recovered: false)
    INSUFFICIENT_STATE = 4010
    # graphql-transport-ws, named as in enisdenjo/graphql-ws src/common.ts
    GQL_INTERNAL_SERVER_ERROR = 4500
    GQL_BAD_REQUEST = 4400
    GQL_UNAUTHORIZED = 4401
    GQL_FORBIDDEN = 4403
    GQL_SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    GQL_CONNECTION_INITIALISATION_TIMEOUT = 4408
    GQL_SUBSCRIBER_ALREADY_EXISTS = 4409
    GQL_TOO_MANY_INITIALISATION_REQUESTS = 4429


CLOSE_CODE_EXPLANATIONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "normal closure",
    CloseCode.POLICY_VIOLATION: "token expired or not allowed",
    CloseCode.MESSAGE_TOO_BIG: "frame larger than HERALD_MAX_MESSAGE_BYTES",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.SERVICE_RESTART: "replica shutting down; reconnect with since",
    CloseCode.TRY_AGAIN_LATER: "try again later",
    CloseCode.INSUFFICIENT_STATE: "insufficient state: resume with since",
    CloseCode.GQL_INTERNAL_SERVER_ERROR: "Internal server error",
    CloseCode.GQL_BAD_REQUEST: "Invalid message received",
    CloseCode.GQL_UNAUTHORIZED: "Unauthorized",
    CloseCode.GQL_FORBIDDEN: "Forbidden",
    CloseCode.GQL_SUBPROTOCOL_NOT_ACCEPTABLE: "Subprotocol not acceptable",
    CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT: "Connection initialisation timeout",
    CloseCode.GQL_SUBSCRIBER_ALREADY_EXISTS: "Subscriber already exists",
    CloseCode.GQL_TOO_MANY_INITIALISATION_REQUESTS: "Too many initialisation requests",
}


class ErrorCode(StrEnum):
    """``code`` of a chat ``error`` frame."""

    BAD_REQUEST = "bad_request"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    FORBIDDEN = "forbidden"


class HeraldError(Exception):
    """Root of every error Herald raises on purpose."""

    status_code = 500
    error_code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(HeraldError):
    status_code = 422


class Unauthorized(HeraldError):
    status_code = 401
    error_code = ErrorCode.FORBIDDEN


class Forbidden(HeraldError):
    status_code = 403
    error_code = ErrorCode.FORBIDDEN


class NotFound(HeraldError):
    status_code = 404


class Conflict(HeraldError):
    status_code = 409


class PayloadTooLarge(HeraldError):
    status_code = 413


class RateLimited(HeraldError):
    """Over a write limit: nothing was published; ``retry_after`` seconds until a write is likely taken."""

    status_code = 429
    error_code = ErrorCode.RATE_LIMITED

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ServiceUnavailable(HeraldError):
    status_code = 503
    error_code = ErrorCode.UNAVAILABLE


def shown(value: str, limit: int = 64) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters: a refusal describes its input,
    it never echoes a large one back (SPEC §8)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
