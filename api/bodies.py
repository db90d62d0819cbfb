"""HTTP request bodies: capped before they are buffered, and never echoed back at length (SPEC §8, §12).

``BodyLimit`` is pure ASGI, outermost among the HTTP middleware. A declared ``Content-Length`` over
``HERALD_MAX_BODY_BYTES`` is answered 413 before the application runs and before a byte of the body
is read; a chunked body is counted as it is read and refused the moment it goes over. Either way the
connection is closed after the 413, so the rest of the upload is not read at all. (uvicorn itself
holds at most its 64 KiB flow-control window of an unread body.)

Validation errors (422) keep each problem's location and message, not the offending input: echoing a
1 MiB field back, once per error, would multiply the input instead of describing it.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: validation problems listed in one 422 (the rest are summarised in a count)
MAX_ERRORS = 20
#: an offending value longer than this (as JSON) is left out of a 422
MAX_ECHO_BYTES = 256


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an ``HTTPException`` so FastAPI's body parsing lets it through unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body larger than HERALD_MAX_BODY_BYTES ({limit} bytes)", {"Connection": "close"}
        )


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if _declared_length(scope) > limit:
            await _refuse(send, limit)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(send, limit)


def too_large(limit: int) -> str:
    return f"request body larger than HERALD_MAX_BODY_BYTES ({limit} bytes)"


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the HTTP parser refuses a malformed length before we run
    return 0


async def _refuse(send: Send, limit: int) -> None:
    body = orjson.dumps({"detail": too_large(limit)})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def describe(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation problems fit to send back: bounded in number, large inputs left out."""
    described = []
    for error in errors[:MAX_ERRORS]:
        entry = {key: value for key, value in error.items() if key not in ("input", "ctx", "url")}
        if "input" in error:
            echo = jsonable_encoder(error["input"])
            if len(orjson.dumps(echo, option=orjson.OPT_NON_STR_KEYS)) <= MAX_ECHO_BYTES:
                entry["input"] = echo
        if "ctx" in error:
            entry["ctx"] = {key: str(value)[:MAX_ECHO_BYTES] for key, value in error["ctx"].items()}
        described.append(entry)
    if len(errors) > MAX_ERRORS:
        described.append({"msg": f"{len(errors) - MAX_ERRORS} more problems not listed"})
    return described


def install(app: FastAPI, max_bytes: int) -> None:
    """The body cap and the 422 handler on ``app``."""
    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe(list(exc.errors()))}, status_code=422)
