"""``api.proxy.TrustedProxies``: ``X-Forwarded-*`` rewritten for trusted peers only, before the app runs (it is a
plain callable returning the app's awaitable; the end-to-end checks are tests/e2e/test_hardening_access.py)."""

from __future__ import annotations

from typing import Any

from api.proxy import VIA_TRUSTED_PROXY, TrustedProxies


def _scope(kind: str, client: str) -> dict[str, Any]:
    return {
        "type": kind,
        "scheme": "ws" if kind == "websocket" else "http",
        "client": (client, 50000),
        "headers": [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")],
    }


async def _seen(kind: str, client: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    await TrustedProxies(app, "10.0.0.1")(_scope(kind, client), None, None)  # type: ignore[arg-type]
    return seen[0]


async def test_a_trusted_proxy_s_forwarded_headers_are_believed() -> None:
    scope = await _seen("websocket", "10.0.0.1")
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "wss"
    assert scope[VIA_TRUSTED_PROXY] is True


async def test_anyone_else_s_forwarded_headers_are_ignored() -> None:
    scope = await _seen("http", "198.51.100.9")
    assert scope["client"] == ("198.51.100.9", 50000)
    assert scope["scheme"] == "http"
    assert scope[VIA_TRUSTED_PROXY] is False


async def test_the_lifespan_goes_straight_to_the_app() -> None:
    scope = await _seen("lifespan", "10.0.0.1")
    assert VIA_TRUSTED_PROXY not in scope
