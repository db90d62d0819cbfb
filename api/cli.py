"""``herald serve | token | bench``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import uvicorn

from api.auth import Auth
from api.logs import configure
from api.settings import Settings
from api.ws.fastpath import HeraldWebSocketProtocol

log = logging.getLogger("herald")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herald", description="Herald: real-time pub/sub over Redis")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one replica (uvicorn)")
    serve.add_argument("--host", help="bind address (HERALD_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (HERALD_PORT, default 8000)")
    serve.add_argument("--redis-url", help="redis://… or memory:// (HERALD_REDIS_URL, default memory://)")
    serve.add_argument("--replica-id", help="replica name (HERALD_REPLICA_ID, default <hostname>-<pid>)")

    token = commands.add_parser("token", help="print a signed JWT (needs HERALD_JWT_SECRET)")
    token.add_argument("--user", required=True, help="the token's subject")
    token.add_argument("--ttl", type=float, help="lifetime in seconds (default: no expiry)")
    token.add_argument("--channels", help="comma-separated room names the token is limited to")

    commands.add_parser("bench", help="run the benchmark suite from a source checkout (`herald bench --help`)")
    return parser


def serve(settings: Settings) -> int:
    from api.app import create_app

    configure(settings.log_level, settings.log_format)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        # uvicorn's websockets-sansio (which enforces ws_max_size with 1009; wsproto does not) plus
        # Herald's prepared-frame writer. Per-message deflate would make every recipient's frame
        # different bytes (and cost a compressor per socket), so it is off.
        ws=HeraldWebSocketProtocol,
        ws_max_size=settings.max_message_bytes,
        ws_per_message_deflate=False,
        # Part of the grace period for sockets and handlers; the rest is for the lifespan shutdown.
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s * 0.6)),
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="*",
    )
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully; with this
    # handler in place that ends the process with status 0 instead of death by signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    _Server(config, settings.shutdown_grace_s).run()
    return 0


def _stopped(sig: int, frame: FrameType | None) -> None:
    """The graceful shutdown is already done: exit normally."""


class _Server(uvicorn.Server):
    """uvicorn's server with a hard deadline: told to stop, it exits within the grace period even
    if a handler or the lifespan shutdown hangs (e.g. on a Redis that stopped answering)."""

    def __init__(self, config: uvicorn.Config, grace_s: float) -> None:
        super().__init__(config)
        self._grace_s = grace_s
        self._watchdog: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._watchdog is None:
            # A little early, so that "within the grace period" holds despite scheduling delays.
            self._watchdog = threading.Timer(self._grace_s * 0.9, _force_exit, args=(self._grace_s,))
            self._watchdog.daemon = True
            self._watchdog.start()
        super().handle_exit(sig, frame)


def _force_exit(grace_s: float) -> None:
    log.error("shutdown would outlast HERALD_SHUTDOWN_GRACE_S=%s; exiting now", grace_s)
    sys.stderr.flush()
    os._exit(0)


def token(user: str, ttl: float | None, channels: str | None) -> int:
    settings = Settings()
    if not settings.jwt_secret:
        print("herald token: HERALD_JWT_SECRET is not set", file=sys.stderr)
        return 2
    rooms = [c.strip() for c in channels.split(",") if c.strip()] if channels else None
    print(Auth(settings.jwt_secret).issue(user, ttl, rooms))
    return 0


def bench(args: Sequence[str]) -> int:
    # The benchmarks live beside the packages in a source checkout; they are not installed.
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "benchmarks").is_dir() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        from benchmarks.run import main as run_bench  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("herald bench: run it from a source checkout (the benchmarks/ package is not installed)", file=sys.stderr)
        return 2
    return int(run_bench(list(args)))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # every later argument belongs to the benchmark's own parser
        return bench(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        overrides = {
            key: value
            for key, value in (
                ("host", args.host),
                ("port", args.port),
                ("redis_url", args.redis_url),
                ("replica_id", args.replica_id),
            )
            if value is not None
        }
        return serve(Settings(**overrides))
    if args.command == "token":
        return token(args.user, args.ttl, args.channels)
    raise AssertionError(f"unhandled command {args.command}")
