"""HS256 JWT auth: who is connecting, and which rooms they may use.

With no ``HERALD_JWT_SECRET`` access is anonymous (the server warns at
start-up): the user is whatever display name the client gives.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from api.errors import Forbidden, Unauthorized

ALGORITHM = "HS256"
ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    #: rooms this principal may read and write; None means every room
    channels: frozenset[str] | None = None
    #: expiry (epoch seconds), None when the token has none or auth is off
    expires_at: float | None = None

    def may_use(self, room: str) -> bool:
        return self.channels is None or room in self.channels

    def check_room(self, room: str) -> None:
        if not self.may_use(room):
            raise Forbidden(f"token does not allow room {room!r}")

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at


class Auth:
    def __init__(self, secret: str | None) -> None:
        self.secret = secret or None

    @property
    def enabled(self) -> bool:
        return self.secret is not None

    def issue(self, user: str, ttl_s: float | None = None, channels: Sequence[str] | None = None) -> str:
        if self.secret is None:
            raise RuntimeError("HERALD_JWT_SECRET is not set")
        claims: dict[str, Any] = {"sub": user, "iat": int(time.time())}
        if ttl_s is not None:
            claims["exp"] = int(time.time() + ttl_s)
        if channels is not None:
            claims["channels"] = list(channels)
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str | None) -> Principal:
        """The token's principal; ``Unauthorized`` when it is missing, malformed, expired or forged."""
        if self.secret is None:
            raise RuntimeError("auth is off")
        if not token:
            raise Unauthorized("a token is required")
        try:
            claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM], options={"require": ["sub"]})
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        channels = claims.get("channels")
        if channels is not None and not (isinstance(channels, list) and all(isinstance(c, str) for c in channels)):
            raise Unauthorized("invalid token: channels must be a list of room names")
        user = clean_user(str(claims["sub"]))
        if not user:
            raise Unauthorized("invalid token: empty sub")
        return Principal(
            user=user,
            channels=frozenset(channels) if channels is not None else None,
            expires_at=float(claims["exp"]) if "exp" in claims else None,
        )

    def principal(self, token: str | None, display_name: str | None = None) -> Principal:
        """Who this is: the token's subject when auth is on, else the given display name."""
        if self.secret is None:
            return Principal(user=clean_user(display_name or "")[:64] or ANONYMOUS)
        return self.verify(token)

    def from_init_payload(self, payload: Mapping[str, Any] | None, fallback: str | None) -> Principal:
        """GraphQL ``connection_init``: ``{"token": T}`` or ``{"authorization": "Bearer T"}``, else ``fallback``."""
        token = fallback
        if payload:
            if isinstance(payload.get("token"), str):
                token = payload["token"]
            elif isinstance(payload.get("authorization") or payload.get("Authorization"), str):
                token = bearer(payload.get("authorization") or payload.get("Authorization"))
        return self.principal(token)


def clean_user(name: str) -> str:
    """Without control characters: NUL separates user from connection in presence entries, and a
    newline would forge log lines."""
    return "".join(char for char in name if char >= " " and char != "\x7f")


def bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


def token_from(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """``?token=`` or ``Authorization: Bearer``."""
    return query.get("token") or bearer(headers.get("authorization"))
