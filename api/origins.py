"""Which browser origins may open a WebSocket (or an SSE stream) or get CORS answers (SPEC §7).

A browser sends ``Origin`` on every WebSocket handshake, so a page on another site cannot ride on
its visitor's cookies or network position (cross-site WebSocket hijacking) unless its origin is
allowed. ``HERALD_ALLOWED_ORIGINS``: comma-separated origins (``https://chat.example.com``) or ``*``.
The same origin is always allowed (Herald's own web page), and is the only one by default: the
``Origin``'s host and port equal the request's ``Host`` (or the ``X-Forwarded-Host`` a trusted proxy
set, see api.proxy). A request without ``Origin`` is not a browser's and is not affected.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from api.proxy import VIA_TRUSTED_PROXY

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    any_origin: bool
    #: every listed origin as browsers send it: ``scheme://host[:port]``, lower case, no default port
    listed: frozenset[str]

    @property
    def cors_origins(self) -> list[str]:
        """What CORS answers for; empty: no CORS at all (same-origin pages need none)."""
        return ["*"] if self.any_origin else sorted(self.listed)

    def allows(self, scope: Mapping[str, Any]) -> bool:
        headers = _headers(scope)
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser: origins are a browser's protection
        if self.any_origin:
            return True
        parsed = _origin(origin)
        if parsed is None:
            return False  # "null" (sandboxed frames, file://) or junk
        scheme, host, port = parsed
        if _serialise(parsed) in self.listed:
            return True
        hosts = [headers.get("host")]
        if scope.get(VIA_TRUSTED_PROXY):
            forwarded = headers.get("x-forwarded-host")
            hosts = [forwarded.split(",")[0].strip() if forwarded else None, *hosts]
        return any(_host_port(value, scheme) == (host, port) for value in hosts if value)


@functools.lru_cache(maxsize=8)
def origin_policy(allowed: str) -> OriginPolicy:
    """The policy for a ``HERALD_ALLOWED_ORIGINS`` value (parsed once per value)."""
    items = [item.strip() for item in allowed.split(",") if item.strip()]
    listed = set()
    for item in items:
        parsed = _origin(item)
        if parsed is not None:
            listed.add(_serialise(parsed))
    return OriginPolicy(any_origin="*" in items, listed=frozenset(listed))


def invalid_origins(allowed: str) -> list[str]:
    """The items of a ``HERALD_ALLOWED_ORIGINS`` value that are not origins (refused at start-up)."""
    return [item.strip() for item in allowed.split(",") if item.strip() not in ("", "*") and _origin(item) is None]


def _serialise(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    return f"{scheme}://{host}" if port == _DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    wanted = (b"origin", b"host", b"x-forwarded-host")
    return {name.decode(): value.decode("latin-1") for name, value in scope.get("headers", ()) if name in wanted}


def _origin(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, or None when it is not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _host_port(value: str, scheme: str) -> tuple[str, int] | None:
    """A ``Host`` header as (host, port), the port defaulting to the origin scheme's."""
    try:
        parts = urlsplit(f"//{value.strip()}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]
