"""``create_app(settings)``: one replica. Nothing is built at import time, so a
test can run several differently configured apps in one process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api import bodies, tracing
from api.auth import Auth
from api.books import Books
from api.chat import Chat
from api.errors import HeraldError, RateLimited, ServiceUnavailable
from api.graphql import http as graphql_http
from api.graphql.endpoint import graphql_socket
from api.graphql.service import GraphQLService
from api.limits import WriteLimits
from api.metrics import Metrics, Sources
from api.origins import origin_policy
from api.presence import RoomPresence
from api.routes import books as book_routes
from api.routes import chat as chat_routes
from api.routes import docs, ops
from api.settings import Settings
from api.sse import chat as sse_chat
from api.sse import graphql as sse_graphql
from api.sse.registry import SseStreams
from api.state import AppState
from api.ws.chat_endpoint import chat_socket
from api.ws.dispatch import HeraldApp, SocketRoutes
from api.ws.registry import Connections
from broker import BrokerOptions, OutcomeUnknown, open_broker
from broker import Unavailable as BrokerUnavailable

log = logging.getLogger("herald")

STATIC = Path(__file__).parent / "static"


def build_state(settings: Settings, traces: tracing.Tracing | None = None) -> AppState:
    broker = open_broker(
        settings.redis_url,
        BrokerOptions(
            replica_id=settings.replica_id,
            prefix=settings.key_prefix,
            history_size=settings.history_size,
            history_ttl_s=settings.history_ttl_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            buffer_limit=settings.send_queue,
            probe_s=settings.pubsub_probe_s,
            presence_ttl_s=settings.presence_ttl_s,
            pool_size=settings.redis_pool_size,
            min_replicas_ack=settings.redis_min_replicas_ack,
            ack_timeout_ms=settings.redis_ack_timeout_ms,
            fan_out=traces.fan_out if traces is not None else None,
        ),
    )
    if traces is not None:
        broker = traces.broker(broker)
    metrics = Metrics()
    books = Books(broker, metrics)
    chat = Chat(broker, metrics, max_message_bytes=settings.max_message_bytes)
    graphql = GraphQLService(settings, broker, metrics.counts, books=books, chat=chat)
    connections = Connections(settings.max_connections)
    sse = SseStreams()

    def open_connections(endpoint: str, transport: str) -> int:
        return sse.count(endpoint) if transport == "sse" else connections.count(endpoint)

    metrics.sources = Sources(
        connections=open_connections,
        broker=broker.stats,
        graphql_subscriptions=graphql.subscriptions,
        graphql_shared_streams=graphql.shared_streams,
    )
    return AppState(
        settings=settings,
        broker=broker,
        auth=Auth(settings.jwt_secret),
        connections=connections,
        presence=RoomPresence(broker),
        write_limits=WriteLimits(settings.http_rate_limit, settings.http_rate_burst),
        metrics=metrics,
        sse=sse,
        books=books,
        chat=chat,
        graphql=graphql,
    )


def create_app(settings: Settings | None = None, traces: tracing.Tracing | None = None) -> FastAPI:
    """``traces``: OpenTelemetry tracing; by default from the standard environment (off unless
    OTEL_TRACES_EXPORTER is set)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        traced = traces if traces is not None else tracing.from_environment()
        state = build_state(settings, traced)
        app.state.herald = state
        log.info("replica %s starting; broker: %s", settings.replica_id, state.broker.describe())
        if not state.auth.enabled:
            log.warning("HERALD_JWT_SECRET is not set: access is anonymous")
        elif len(settings.jwt_secret or "") < 32:
            log.warning("HERALD_JWT_SECRET is shorter than 32 bytes: HS256 keys that short can be guessed")
        await state.broker.start()
        if not state.broker.ready:
            log.warning("redis is not reachable yet; /ready answers 503 until it is")
        state.presence.start()
        state.connections.start_heartbeat(settings.heartbeat_s)
        try:
            yield
        finally:
            await state.connections.stop()
            await state.presence.stop()
            await state.broker.close()
            if traced is not None:
                traced.close()
            log.info("replica %s stopped", settings.replica_id)

    app = HeraldApp(
        sockets=SocketRoutes(chat=chat_socket, graphql=graphql_socket),
        title="Herald",
        summary="Horizontally scaled real-time pub/sub: chat rooms and GraphQL subscriptions over Redis",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # /docs comes from api/routes/docs.py, its assets served locally
        redoc_url=None,  # ReDoc loads its logo from a CDN: not served
    )
    app.include_router(ops.router)
    app.include_router(chat_routes.router)
    app.include_router(book_routes.router)
    app.include_router(graphql_http.router)
    app.include_router(sse_chat.router)
    app.include_router(sse_graphql.router)
    _add_error_handlers(app)
    docs.add_docs(app)
    _add_web_page(app)
    bodies.install(app, settings.max_body_bytes)
    if cors_origins := origin_policy(settings.allowed_origins).cors_origins:
        # Added last, so outermost: every answer to an allowed origin carries CORS headers, a 413 too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            max_age=600,
        )
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HeraldError)
    async def herald_error(request: Request, exc: HeraldError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(BrokerUnavailable)
    async def unavailable(request: Request, exc: BrokerUnavailable) -> JSONResponse:
        # OutcomeUnknown says so: a client told "nothing was published" would retry and duplicate
        detail = str(exc) if isinstance(exc, OutcomeUnknown) else "redis is unavailable; nothing was published"
        return await herald_error(request, ServiceUnavailable(detail))


def _add_web_page(app: FastAPI) -> None:
    static_dir = str(STATIC)
    app.mount("/static", StaticFiles(directory=static_dir), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(f"{static_dir}/index.html")
