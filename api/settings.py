"""Every ``HERALD_*`` setting. The README's settings table is checked against this model."""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.origins import invalid_origins
from broker import MemoryUrl, parse_redis_url


def default_replica_id() -> str:
    """Unique per process, readable in logs: ``<hostname>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore")

    redis_url: str = Field(
        "memory://",
        description="`redis://…`/`rediss://…` for a real Redis, `redis+sentinel://host:port[,…]/MASTER[/db]`, "
        "`redis+cluster://host:port[,…]`/`rediss+cluster://…` (SPEC §9); `memory://` embeds one (single replica)",
    )
    replica_id: str = Field(
        default_factory=default_replica_id, description="name this replica reports; default `<hostname>-<pid>`"
    )
    host: str = Field("127.0.0.1", description="`herald serve` bind address")
    port: int = Field(8000, description="`herald serve` port")
    workers: int = Field(
        1, ge=1, description="replicas `herald serve` runs on this port, one process each (README, Workers)"
    )
    redis_pool_size: int = Field(64, ge=2, description="Redis connections per replica (one is the pub/sub connection)")
    redis_min_replicas_ack: int = Field(
        0, ge=0, description="a publish is acknowledged only once this many Redis replicas hold it (`WAIT`); 0: off"
    )
    redis_ack_timeout_ms: int = Field(
        500, ge=1, description='how long that `WAIT` may take; short of it the publish is 503 "not confirmed"'
    )
    key_prefix: str = Field("herald", description="prefix of every Redis key and pub/sub channel")
    history_size: int = Field(1000, ge=1, description="events retained per channel (exactly), for `since` recovery")
    history_ttl_s: int = Field(
        604800, ge=0, description="a chat room's Redis keys expire after this long without a publish; 0: never"
    )
    idempotency_ttl_s: int = Field(300, ge=1, description="how long a publish's idempotency key is remembered")
    pubsub_probe_s: float = Field(
        10.0, gt=0, description="each pub/sub link is probed this often; a probe not back in time means reconnect"
    )
    slow_close_s: float = Field(
        30.0, gt=0, description="a client that reads nothing (its replay included) for this long is closed 1013"
    )
    heartbeat_s: float = Field(30.0, gt=0, description="interval of chat `heartbeat` frames")
    max_message_bytes: int = Field(65536, ge=64, description="largest accepted WebSocket frame; larger closes 1009")
    rate_limit: float = Field(20.0, gt=0, description="chat `message` and `presence` frames per second per connection")
    rate_burst: int = Field(40, ge=1, description="token-bucket burst for `HERALD_RATE_LIMIT`")
    http_rate_limit: float = Field(
        20.0, gt=0, description="REST writes and GraphQL mutations per second per user (token `sub`, else address)"
    )
    http_rate_burst: int = Field(40, ge=1, description="token-bucket burst for `HERALD_HTTP_RATE_LIMIT`")
    send_queue: int = Field(1000, ge=1, description="frames queued per connection before it is closed 1013")
    max_connections: int = Field(10000, ge=1, description="WebSockets per replica; beyond it new ones close 1013")
    jwt_secret: str | None = Field(None, description="HS256 secret; when set every WebSocket and write needs a token")
    presence_ttl_s: float = Field(30.0, gt=0, description="presence entry lifetime, refreshed while the socket lives")
    graphql_init_timeout_s: float = Field(
        3.0, gt=0, description="graphql-transport-ws: close 4408 without `connection_init`"
    )
    graphql_keepalive_s: float = Field(15.0, gt=0, description="legacy graphql-ws `ka` interval")
    graphql_max_depth: int = Field(10, ge=1, description="deepest selection accepted (introspection exempt)")
    graphql_max_operations: int = Field(
        100, ge=1, description="operations one GraphQL socket may run at once; more get an `error` for that id"
    )
    graphql_max_fields: int = Field(500, ge=1, description="most fields (aliases included) one operation may select")
    allowed_origins: str = Field(
        "",
        description="comma-separated browser origins allowed to open WebSockets and get CORS answers, or `*`; "
        "empty: the same origin only",
    )
    trusted_proxies: str = Field(
        "127.0.0.1",
        description="comma-separated addresses/networks whose `X-Forwarded-For`/`-Proto`/`-Host` are believed, or `*`",
    )
    max_body_bytes: int = Field(1048576, ge=1024, description="largest HTTP request body; larger is 413, unread")
    handshake_timeout_s: float = Field(
        10.0, gt=0, description="a connection that has not sent a complete request (head and body) by then is closed"
    )
    shutdown_grace_s: float = Field(10.0, gt=0, description="SIGTERM: seconds to close sockets (1012) and exit")
    log_level: str = Field("info", description="`debug`, `info`, `warning`, `error`")
    log_format: Literal["text", "json"] = Field("text", description="`json` for one JSON object per log line")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        if bad := invalid_origins(value):
            raise ValueError(f"not origins (scheme://host[:port]): {', '.join(bad)}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _known_topology(cls, url: str) -> str:
        """A malformed URL fails at start-up (``broker.InvalidRedisUrl``), not on the first publish."""
        parse_redis_url(url)
        return url

    @model_validator(mode="after")
    def _acks_need_replicas(self) -> Settings:
        # The embedded Redis has no replicas (nor WAIT): every publish would be 503 "not confirmed".
        if self.redis_min_replicas_ack and isinstance(parse_redis_url(self.redis_url), MemoryUrl):
            raise ValueError("redis_min_replicas_ack needs a real Redis with replicas; memory:// has none")
        return self
