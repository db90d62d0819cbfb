"""Which peers' ``X-Forwarded-*`` headers are believed (``HERALD_TRUSTED_PROXIES``, SPEC §12).

uvicorn's ``ProxyHeadersMiddleware`` does the rewriting (client address from ``X-Forwarded-For``,
scheme from ``X-Forwarded-Proto``) for peers in the list only; a directly exposed replica ignores
what anyone else claims, so an address-keyed limit cannot be escaped with a made-up header.

It also records, in the scope, whether the direct peer was a trusted proxy: only then may
``X-Forwarded-Host`` stand in for ``Host`` when an ``Origin`` is checked (api.origins). After the
rewrite the direct peer is no longer visible, so this is decided here, before it.
"""

from __future__ import annotations

from typing import cast

from starlette.types import ASGIApp
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

#: scope key: True when the connection came from a trusted proxy
VIA_TRUSTED_PROXY = "herald.via_trusted_proxy"


class TrustedProxies(ProxyHeadersMiddleware):
    def __init__(self, app: ASGIApp, trusted: str) -> None:
        super().__init__(cast(ASGI3Application, app), trusted_hosts=trusted)

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "lifespan":
            client = scope.get("client")
            scope[VIA_TRUSTED_PROXY] = client is not None and client[0] in self.trusted_hosts  # type: ignore[literal-required]
        await super().__call__(scope, receive, send)
