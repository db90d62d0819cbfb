"""``HERALD_REDIS_URL`` -> a typed description of the Redis topology (SPEC §9).

Parsed once at start-up, so a typo is one clear line and exit status 2 instead
of a traceback on the first publish. Multi-host forms (sentinel, cluster) are
parsed by hand: ``urllib`` cannot read a comma-separated host list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

ACCEPTED_FORMS = (
    "memory://",
    "redis://[user:pass@]host:port[/db]",
    "rediss://[user:pass@]host:port[/db]",
    "redis+sentinel://[user:pass@]host:port[,host:port…]/MASTER[/db]",
    "redis+cluster://[user:pass@]host:port[,host:port…]",
    "rediss+cluster://[user:pass@]host:port[,host:port…]",
)

REDIS_PORT = 6379
SENTINEL_PORT = 26379


class InvalidRedisUrl(ValueError):
    """The URL is malformed or of an unknown scheme; the message is one line naming the accepted forms."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"invalid Redis URL {redact_userinfo(url)!r}: {reason}; accepted forms: {', '.join(ACCEPTED_FORMS)}"
        )


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MemoryUrl:
    """The embedded fakeredis."""


@dataclass(frozen=True, slots=True)
class StandaloneUrl:
    """One server; ``url`` is handed to redis-py unchanged (it understands every option in it)."""

    url: str
    address: Address
    db: int = 0
    tls: bool = False


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    sentinels: tuple[Address, ...]
    master: str
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """Seed nodes; the rest of the cluster is discovered from them."""

    seeds: tuple[Address, ...]
    tls: bool = False
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


RedisTopology = MemoryUrl | StandaloneUrl | SentinelUrl | ClusterUrl


def redact_userinfo(url: str) -> str:
    """``scheme://user:***@rest``: a URL fit for an error message or a log line."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.partition("@")
    if not sep or not at or "/" in userinfo:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hosts}"


def parse_redis_url(url: str) -> RedisTopology:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidRedisUrl(url, "no scheme")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest.strip("/"):
            raise InvalidRedisUrl(url, "memory:// takes nothing after the scheme")
        return MemoryUrl()
    if scheme in ("redis", "rediss"):
        return _standalone(url, scheme == "rediss")
    if scheme == "redis+sentinel":
        return _sentinel(url, rest)
    if scheme in ("redis+cluster", "rediss+cluster"):
        return _cluster(url, rest, scheme.startswith("rediss"))
    raise InvalidRedisUrl(url, f"unknown scheme {scheme!r}")


def _standalone(url: str, tls: bool) -> StandaloneUrl:
    if "," in url.partition("://")[2].partition("/")[0]:
        raise InvalidRedisUrl(url, "several hosts: use redis+sentinel:// or redis+cluster://")
    try:
        parts = urlsplit(url)
        port = parts.port or REDIS_PORT
    except ValueError as exc:
        raise InvalidRedisUrl(url, str(exc)) from None
    if not parts.hostname:
        raise InvalidRedisUrl(url, "no host")
    return StandaloneUrl(url, Address(parts.hostname, port), _db(url, parts.path.strip("/")), tls)


def _sentinel(url: str, rest: str) -> SentinelUrl:
    netloc, _, path = rest.partition("/")
    username, password, hosts = _userinfo(url, netloc)
    master, _, db = path.strip("/").partition("/")
    if not master:
        raise InvalidRedisUrl(url, "no master name (…/MASTER)")
    return SentinelUrl(_addresses(url, hosts, SENTINEL_PORT), unquote(master), _db(url, db), username, password)


def _cluster(url: str, rest: str, tls: bool) -> ClusterUrl:
    netloc, _, path = rest.partition("/")
    if path.strip("/"):
        raise InvalidRedisUrl(url, "a cluster has only database 0: nothing may follow the hosts")
    username, password, hosts = _userinfo(url, netloc)
    return ClusterUrl(_addresses(url, hosts, REDIS_PORT), tls, username, password)


def _userinfo(url: str, netloc: str) -> tuple[str | None, str | None, str]:
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return None, None, netloc
    user, colon, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) if colon else None, hosts


def _addresses(url: str, hosts: str, default_port: int) -> tuple[Address, ...]:
    if not hosts:
        raise InvalidRedisUrl(url, "no host")
    return tuple(_address(url, item, default_port) for item in hosts.split(","))


def _address(url: str, item: str, default_port: int) -> Address:
    if item.startswith("["):  # [ipv6]:port
        host, bracket, port = item[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise InvalidRedisUrl(url, f"bad host {item!r}")
        port = port[1:]
    else:
        host, _, port = item.partition(":")
    if not host:
        raise InvalidRedisUrl(url, f"empty host in {item!r}")
    if not port:
        return Address(host, default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidRedisUrl(url, f"bad port in {item!r}")
    return Address(host, int(port))


def _db(url: str, text: str) -> int:
    if not text:
        return 0
    if not text.isdigit():
        raise InvalidRedisUrl(url, f"database must be a number, not {text!r}")
    return int(text)
