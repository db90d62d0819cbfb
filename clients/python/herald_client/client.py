"""``HeraldClient``: the entry point (SPEC §11). Rooms and subscriptions hang off it."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncGenerator, Callable
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from herald_client.core import ROOM_NAME, Reconnector, ReconnectPolicy
from herald_client.errors import AuthRefused, OutcomeUnknown, RequestRefused, Unavailable
from herald_client.graphql import subscribe as _subscribe
from herald_client.room import Room


class HeraldClient:
    """One Herald deployment: ``async with HeraldClient("http://host:8000", token=T, user="ada") as herald``.

    ``token`` (a JWT, when the server has auth on) goes in an ``Authorization`` header on
    every connection; ``user`` is the display name when auth is off. After an
    ``AuthRefused``, set ``herald.token`` to a new token and reopen the room with
    ``since=room.offset``: the client never retries a refused token by itself.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        user: str = "anonymous",
        *,
        policy: ReconnectPolicy | None = None,
        rng: random.Random | None = None,
        open_timeout_s: float = 10.0,
    ) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(f"expected an http(s):// or ws(s):// URL, got {url!r}")
        secure = parts.scheme in ("https", "wss")
        self._http_base = urlunsplit(("https" if secure else "http", parts.netloc, parts.path, "", ""))
        self._ws_base = urlunsplit(("wss" if secure else "ws", parts.netloc, parts.path, "", ""))
        self.token = token
        self.user = user
        self.policy = policy or ReconnectPolicy()
        self.rng = rng or random.Random()
        self.open_timeout_s = open_timeout_s
        #: passed to websockets' connect(); proxy=None: Herald URLs are used as given
        self.ws_options: dict[str, Any] = {
            "open_timeout": open_timeout_s,
            "close_timeout": 2,
            "max_size": 2**22,
            "proxy": None,
        }
        self._http: httpx.AsyncClient | None = None
        self._rooms: set[Room] = set()

    async def __aenter__(self) -> HeraldClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await asyncio.gather(*(room.close() for room in list(self._rooms)))
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- the public surface ----------------------------------------------------

    def room(
        self,
        name: str,
        since: str | None = None,
        *,
        on_state: Callable[[str], None] | None = None,
        max_buffer: int = 10_000,
    ) -> Room:
        """A chat room, as an async context manager; entering waits for the first connection.

        ``since``: resume after this offset (``"0"``: every retained event). ``on_state`` is
        called with ``"connecting"``, ``"open"`` and ``"closed"``. At most ``max_buffer``
        frames wait for the application; beyond that the room pauses and resumes later.
        """
        if not ROOM_NAME.match(name):
            raise ValueError(f"invalid room name {name!r}: 1-64 of A-Z a-z 0-9 _ . -")
        room = Room(self, name, since, on_state, max_buffer)
        self._rooms.add(room)
        return room

    def subscribe(
        self, query: str, variables: dict[str, Any] | None = None, operation_name: str | None = None
    ) -> AsyncGenerator[dict[str, Any]]:
        """GraphQL results (``{"data": …, "errors": …, "extensions": …}``) of a subscription, resumed on reconnect.

        A result whose ``extensions`` say ``"recovered": false`` means events were lost for good
        (history trimmed) before the ones that follow. Close it with ``contextlib.aclosing``
        when leaving early.
        """
        return _subscribe(self, query, variables, operation_name)

    async def publish(self, room: str, text: str, key: str | None = None) -> str:
        """Publish over HTTP (``POST /api/chat/{room}/messages``) with an idempotency key; returns the offset.

        For publishers that do not read the room. Retried like ``Room.send`` on 503 and
        network errors, with the same ``Idempotency-Key``, so it publishes at most once.
        """
        if self._http is None:  # made on first use: most clients never publish over HTTP
            self._http = httpx.AsyncClient(base_url=self._http_base, timeout=self.open_timeout_s)
        headers = {**self.headers(), "Idempotency-Key": key or uuid.uuid4().hex}
        backoff = Reconnector(self.policy, self.rng)
        unknown = False
        detail = ""
        response: httpx.Response | None = None
        for attempt in range(self.policy.request_attempts):
            if attempt:
                await asyncio.sleep(backoff.step())
            try:
                response = await self._http.post(
                    f"/api/chat/{quote(room)}/messages", json={"text": text}, headers=headers
                )
            except httpx.TransportError as exc:
                # sent or not? A timeout after the request left may have published it
                unknown = unknown or not isinstance(exc, httpx.ConnectError)
                detail = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in (401, 403):
                raise AuthRefused(f"HTTP {response.status_code}: {response.text[:200]}")
            if response.status_code == 429:  # HERALD_HTTP_RATE_LIMIT: not published; wait as told
                detail = response.text[:200]
                retry_after = _seconds(response.headers.get("Retry-After"))
                await asyncio.sleep(min(retry_after, self.policy.cap_s))
                continue
            if response.status_code == 503:
                detail = response.text[:200]
                unknown = unknown or "unknown" in detail or "may or may not" in detail
                continue
            if response.status_code >= 400:
                raise RequestRefused(str(response.status_code), response.text[:200])
            return str(response.json()["id"])
        if unknown:
            raise OutcomeUnknown(f"{detail} (after {self.policy.request_attempts} attempts)")
        if response is not None and response.status_code == 429:
            raise RequestRefused("rate_limited", f"{detail} (after {self.policy.request_attempts} attempts)")
        raise Unavailable(f"{detail} (after {self.policy.request_attempts} attempts)")

    # -- for rooms and subscriptions -------------------------------------------------

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def chat_url(self, room: str, since: str | None) -> str:
        query: dict[str, str] = {"user": self.user}
        if since is not None:
            query["since"] = since
        return f"{self._ws_base}/ws/chat/{quote(room)}?{urlencode(query)}"

    def graphql_url(self) -> str:
        return f"{self._ws_base}/graphql"

    def forget(self, room: Room) -> None:
        self._rooms.discard(room)


def _seconds(retry_after: str | None) -> float:
    try:
        return max(0.0, float(retry_after or 1))
    except ValueError:
        return 1.0
