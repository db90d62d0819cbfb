"""``HERALD_REDIS_URL`` parsing (SPEC §9): every accepted form, and one clear line for the rest."""

from __future__ import annotations

import subprocess
import sys

import pytest

from broker.urls import (
    ACCEPTED_FORMS,
    Address,
    ClusterUrl,
    InvalidRedisUrl,
    MemoryUrl,
    RedisTopology,
    SentinelUrl,
    StandaloneUrl,
    parse_redis_url,
)

A = Address

VALID: list[tuple[str, RedisTopology]] = [
    ("memory://", MemoryUrl()),
    ("redis://127.0.0.1:6380/2", StandaloneUrl("redis://127.0.0.1:6380/2", A("127.0.0.1", 6380), 2)),
    ("redis://localhost", StandaloneUrl("redis://localhost", A("localhost", 6379), 0)),
    ("rediss://u:p@h:1/0", StandaloneUrl("rediss://u:p@h:1/0", A("h", 1), 0, tls=True)),
    ("redis://h:1/0?socket_timeout=3", StandaloneUrl("redis://h:1/0?socket_timeout=3", A("h", 1), 0)),
    ("redis+sentinel://h:26380/mymaster", SentinelUrl((A("h", 26380),), "mymaster")),
    ("redis+sentinel://a,b:2,[::1]:3/m/4", SentinelUrl((A("a", 26379), A("b", 2), A("::1", 3)), "m", 4)),
    ("redis+sentinel://u:p%40ss@a:1/m", SentinelUrl((A("a", 1),), "m", 0, "u", "p@ss")),
    ("redis+sentinel://:secret@a:1/m/", SentinelUrl((A("a", 1),), "m", 0, None, "secret")),
    ("redis+cluster://a:7000,b:7001", ClusterUrl((A("a", 7000), A("b", 7001)))),
    ("redis+cluster://a/", ClusterUrl((A("a", 6379),))),
    ("rediss+cluster://u:p@a:7000", ClusterUrl((A("a", 7000),), True, "u", "p")),
    ("REDIS+CLUSTER://a:1", ClusterUrl((A("a", 1),))),
]

INVALID: list[tuple[str, str]] = [
    ("bad://x", "unknown scheme 'bad'"),
    ("localhost:6379", "no scheme"),
    ("", "no scheme"),
    ("memory://somewhere", "memory:// takes nothing"),
    ("redis://h:notaport/0", "Port could not be cast"),
    ("redis://h:1/db", "database must be a number"),
    ("redis://", "no host"),
    ("redis://a:1,b:2/0", "several hosts"),
    ("redis+sentinel://a:1", "no master name"),
    ("redis+sentinel://a:1/", "no master name"),
    ("redis+sentinel:///m", "no host"),
    ("redis+sentinel://a:1/m/x", "database must be a number"),
    ("redis+sentinel://a:1,,b:2/m", "empty host"),
    ("redis+cluster://a:99999", "bad port"),
    ("redis+cluster://a:1/0", "only database 0"),
    ("redis+cluster://", "no host"),
    ("redis+cluster://[::1:1", "bad host"),
    ("rediss+sentinel://a:1/m", "unknown scheme"),
]


@pytest.mark.parametrize(("url", "expected"), VALID, ids=[u for u, _ in VALID])
def test_accepted_forms_parse(url: str, expected: RedisTopology) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(("url", "reason"), INVALID, ids=[u or "empty" for u, _ in INVALID])
def test_malformed_urls_name_the_accepted_forms(url: str, reason: str) -> None:
    with pytest.raises(InvalidRedisUrl) as caught:
        parse_redis_url(url)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    assert all(form in message for form in ACCEPTED_FORMS)


def test_the_password_never_reaches_the_message() -> None:
    with pytest.raises(InvalidRedisUrl) as caught:
        parse_redis_url("redis+sentinel://user:hunter2@a:1,b:x/m")
    assert "hunter2" not in str(caught.value)
    assert "user:***@" in str(caught.value)


def test_passwords_stay_out_of_repr() -> None:
    assert "hunter2" not in repr(parse_redis_url("redis+cluster://u:hunter2@a:1"))


@pytest.mark.parametrize("url", ["bad://x", "redis+sentinel://a:1"])
def test_herald_serve_with_a_bad_url_prints_one_line_and_exits_2(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "api", "serve", "--redis-url", url, "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "HERALD_REDIS_URL" in lines[0] and "invalid Redis URL" in lines[0]
    assert "Traceback" not in done.stderr
    assert "redis+cluster://" in lines[0]


def test_herald_serve_reads_a_bad_url_from_the_environment_too() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "api", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "HERALD_REDIS_URL": "redis+cluster://"},
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
