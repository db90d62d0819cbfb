"""``herald [--version] serve | token | bench``: the console script."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import sys
import warnings
from collections.abc import Sequence
from importlib import metadata
from types import FrameType

from jwt.warnings import InsecureKeyLengthWarning
from pydantic import ValidationError

from api.auth import Auth
from api.logs import configure
from api.models import is_room
from api.serving import replica, settle_heap
from api.settings import Settings
from api.workers import check_port, supervise

log = logging.getLogger("herald")


SERVE_DESCRIPTION = """\
Run one Herald replica: uvicorn (uvloop, httptools, websockets-sansio) serving the chat WebSockets,
GraphQL (HTTP and both WebSocket subprotocols), the HTTP API, /docs, /metrics, /health and /ready.

Every setting is an environment variable; the four flags below override their variable. With no
HERALD_REDIS_URL the replica embeds an in-process Redis (memory://): fine for one replica, not more.
SIGTERM closes every socket 1012 and exits 0 within HERALD_SHUTDOWN_GRACE_S.
"""


def _settings_help() -> str:
    """The settings, from the model itself, so this list cannot drift from what is read."""
    lines = ["settings (environment variables, with their defaults; README.md has the full table):"]
    for name, field in Settings.model_fields.items():
        default = "<hostname>-<pid>" if field.default_factory is not None else field.default
        shown = "unset" if default is None else default
        lines.append(f"  HERALD_{name.upper():<30} {shown!s:<17} {field.description or ''}".rstrip())
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herald",
        description="Herald: horizontally scaled real-time pub/sub over Redis (chat WebSockets, GraphQL).",
        epilog="`herald COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"herald {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run one replica (uvicorn)",
        description=SERVE_DESCRIPTION,
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="bind address (HERALD_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (HERALD_PORT, default 8000)")
    serve.add_argument(
        "--redis-url",
        help="redis://…, redis+sentinel://…, redis+cluster://… or memory:// (HERALD_REDIS_URL, default memory://)",
    )
    serve.add_argument("--replica-id", help="replica name (HERALD_REPLICA_ID, default <hostname>-<pid>)")
    serve.add_argument(
        "--workers", type=int, help="replicas on this port, one process each: one per core (HERALD_WORKERS, default 1)"
    )

    token = commands.add_parser(
        "token",
        help="print a signed JWT (needs HERALD_JWT_SECRET)",
        description="Print an HS256 JWT signed with HERALD_JWT_SECRET, for ?token= or Authorization: Bearer.",
    )
    token.add_argument("--user", required=True, help="the token's subject")
    token.add_argument("--ttl", type=float, help="lifetime in seconds (default: no expiry)")
    token.add_argument("--channels", help="comma-separated room names the token is limited to (default: all)")

    # Listed here for `herald --help`; its arguments belong to the benchmark's own parser (see main()).
    commands.add_parser("bench", help="benchmark Herald against its peers (needs herald[bench]; `herald bench --help`)")
    return parser


def _version() -> str:
    try:
        return metadata.version("herald")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def listen(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """Bind before anything starts, so a taken port is one line and status 2, not a half-started replica.
    ``shared``: one of ``--workers`` (``SO_REUSEPORT``: the kernel spreads connections over them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise CommandError(f"herald serve: cannot listen on {host}:{port}: {why}") from None
    return sock


class CommandError(Exception):
    """A refusal worth one line on stderr and exit status 2."""


def serve(settings: Settings) -> int:
    if settings.workers == 1:
        return _serve_one(settings)
    if settings.redis_url.startswith("memory:"):  # each worker would embed a Redis of its own
        raise CommandError("herald serve: --workers needs a shared Redis (HERALD_REDIS_URL), not memory://")
    try:
        check_port(settings.host, settings.port)
    except OSError as exc:
        why = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise CommandError(f"herald serve: cannot listen on {settings.host}:{settings.port}: {why}") from None
    configure(settings.log_level, settings.log_format)
    return supervise(settings, settings.workers, lambda one: _serve_one(one, shared=True))


def _serve_one(settings: Settings, *, shared: bool = False) -> int:
    listener = listen(settings.host, settings.port, shared=shared)
    configure(settings.log_level, settings.log_format)
    # Herald warns about a short HERALD_JWT_SECRET itself, once, at start-up
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
    server = replica(settings)
    # Modules, routes and schemas live as long as the process: the collector's full passes need not walk
    # them (one took ~0.3 s with a thousand sockets open, in the middle of the W4 benchmark).
    settle_heap()
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully; with this
    # handler in place that ends the process with status 0 instead of death by signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    server.run(sockets=[listener])
    return 0


def _stopped(sig: int, frame: FrameType | None) -> None:
    """The graceful shutdown is already done: exit normally."""


def token(user: str, ttl: float | None, channels: str | None) -> int:
    settings = Settings()
    if not settings.jwt_secret:
        raise CommandError("herald token: HERALD_JWT_SECRET is not set")
    if ttl is not None and not ttl > 0:
        raise CommandError(f"herald token: --ttl must be a positive number of seconds, not {ttl:g}")
    rooms = [c.strip() for c in channels.split(",") if c.strip()] if channels else None
    bad = [room for room in rooms or () if not is_room(room)]
    if bad:
        raise CommandError(f"herald token: not room names (letters, digits, _ . -, 1-64): {', '.join(bad)}")
    if len(settings.jwt_secret.encode()) < 32:
        print("herald token: warning: HERALD_JWT_SECRET is shorter than 32 bytes", file=sys.stderr)
    with warnings.catch_warnings():  # said once above, in Herald's words
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        print(Auth(settings.jwt_secret).issue(user, ttl, rooms))
    return 0


def bench(args: Sequence[str]) -> int:
    from benchmarks.args import parse_args

    parse_args(list(args))  # --help and bad options answer before anything heavy is imported
    try:
        from benchmarks.run import main as run_bench
    except ImportError as exc:
        print(f"herald bench needs the bench extra: pip install 'herald[bench]' ({exc})", file=sys.stderr)
        return 2
    return int(run_bench(list(args)))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ValidationError as exc:
        problems = "; ".join(f"HERALD_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        print(f"herald: invalid settings: {problems}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # every later argument belongs to the benchmark's own parser
        return bench(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "serve":
        overrides = {
            key: value
            for key, value in (
                ("host", args.host),
                ("port", args.port),
                ("redis_url", args.redis_url),
                ("replica_id", args.replica_id),
                ("workers", args.workers),
            )
            if value is not None
        }
        return serve(Settings(**overrides))
    if args.command == "token":
        return token(args.user, args.ttl, args.channels)
    raise AssertionError(f"unhandled command {args.command}")
