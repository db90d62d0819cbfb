"""Which peers' ``X-Forwarded-*`` headers are believed (``HERALD_TRUSTED_PROXIES``, SPEC §12).

uvicorn's ``ProxyHeadersMiddleware`` does the rewriting (client address from ``X-Forwarded-For``,
scheme from ``X-Forwarded-Proto``) for peers in the list only; a directly exposed replica ignores
what anyone else claims, so an address-keyed limit cannot be escaped with a made-up header.

It also records, in the scope, whether the direct peer was a trusted proxy: only then may
``X-Forwarded-Host`` stand in for ``Host`` when an ``Origin`` is checked (api.origins). After the
rewrite the direct peer is no longer visible, so this is decided here, before it.

It is not a coroutine: it rewrites the scope and returns the app's own awaitable, so a WebSocket, which
lives for hours, keeps no frame of it (two coroutine frames, ~0.7 KB per idle socket; README, W3). uvicorn
is told the app is ASGI 3 (``interface="asgi3"``, api.serving): it cannot tell from a plain ``__call__``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

from starlette.types import ASGIApp
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

#: scope key: True when the connection came from a trusted proxy
VIA_TRUSTED_PROXY = "herald.via_trusted_proxy"


async def _rewritten(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The app behind uvicorn's rewrite: nothing (the rewrite is all that is wanted of it)."""


class TrustedProxies:
    def __init__(self, app: ASGIApp, trusted: str) -> None:
        self.app = cast(ASGI3Application, app)
        self._rewrite = ProxyHeadersMiddleware(_rewritten, trusted_hosts=trusted)
        self.trusted_hosts = self._rewrite.trusted_hosts

    def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> Awaitable[None]:
        if scope["type"] != "lifespan":
            client = scope.get("client")
            scope[VIA_TRUSTED_PROXY] = client is not None and client[0] in self.trusted_hosts  # type: ignore[literal-required]
            _complete(self._rewrite(scope, receive, send))
        return self.app(scope, receive, send)


def _complete(rewrite: Awaitable[None]) -> None:
    """Run uvicorn's rewrite, which awaits nothing that suspends (only ``_rewritten``), to its end, here."""
    step = rewrite.__await__()
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    raise RuntimeError("uvicorn's proxy-headers rewrite suspended")  # a uvicorn that does I/O there: fail loudly
