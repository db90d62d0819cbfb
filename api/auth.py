"""HS256 JWT auth: who is connecting, and which rooms they may use.

With no ``HERALD_JWT_SECRET`` access is anonymous (the server warns at
start-up): the user is whatever display name the client gives.
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from api.errors import Forbidden, Unauthorized, shown

ALGORITHM = "HS256"
ANONYMOUS = "anonymous"
#: longest token subject accepted (characters): room for an e-mail address or a URI, not for a payload
MAX_SUB_LENGTH = 256
#: Unicode categories a subject may not contain: controls (NUL separates user from connection in
#: presence entries, a newline would forge log lines), lone surrogates (cannot be encoded as UTF-8)
#: and line/paragraph separators
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


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
            raise Forbidden(f"token does not allow room {shown(room)}")


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
        except (OverflowError, ValueError, TypeError) as exc:
            # PyJWT's int() of a time claim: 1e400 parses as inf, NaN is not a number
            raise Unauthorized("invalid token: a time claim is not a representable number") from exc
        return principal_from_claims(claims)

    def principal(self, token: str | None, display_name: str | None = None) -> Principal:
        """Who this is: the token's subject when auth is on, else the given display name."""
        if self.secret is None:
            return Principal(user=clean_user(display_name or "")[:64] or ANONYMOUS)
        return self.verify(token)


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal of verified claims; ``Unauthorized`` for anything Herald could not represent faithfully.

    A subject is refused rather than cleaned: two subjects that differ only by a control character must
    not become one user.
    """
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("invalid token: sub must be a non-empty string")
    if len(sub) > MAX_SUB_LENGTH:
        raise Unauthorized(f"invalid token: sub is longer than {MAX_SUB_LENGTH} characters")
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in sub):
        raise Unauthorized("invalid token: sub contains control characters")
    channels = claims.get("channels")
    if channels is not None and not (isinstance(channels, list) and all(isinstance(c, str) for c in channels)):
        raise Unauthorized("invalid token: channels must be a list of room names")
    return Principal(
        user=sub,
        channels=frozenset(channels) if channels is not None else None,
        expires_at=_expiry(claims.get("exp")),
    )


def _expiry(exp: object) -> float | None:
    """``exp`` as epoch seconds; refused when it is not a finite number (10**400 would overflow a float)."""
    if exp is None:
        return None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise Unauthorized("invalid token: exp must be a number")
    try:
        value = float(exp)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise Unauthorized("invalid token: exp is not a representable time")
    return value


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
