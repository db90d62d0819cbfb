"""broker.resp: the publisher's hand-written RESP encoder sends exactly the bytes redis-py would."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from broker.resp import pack


class Level(enum.IntEnum):
    HIGH = 3


def redis_py(commands: list[tuple[Any, ...]], **options: Any) -> bytes:
    return b"".join(Connection(**options).pack_commands(commands))


@pytest.mark.parametrize(
    "commands",
    [
        [("EVALSHA", "a" * 40, 2, "h:{room}:stream", "h:{room}:meta", "h:{room}:events", 1000, '{"text":"hi"}')],
        [("EVALSHA", "s", 0, "", "ünïcødé ✓ 🚀", -5, 0, 2**63, b"\x00\r\n$raw")],  # empty, non-ASCII, CRLF inside
        [("EVALSHA", "s", 1, "k", "x" * 70_000), ("WAIT", 1, 500)],  # past redis-py's chunking cutoff
        [("SCRIPT LOAD", "return 1")],  # a name of two words is sent as two
        [("ECHO", 1.5), ("ECHO", Level.HIGH), ("ECHO", bytearray(b"ba")), ("ECHO", memoryview(b"mv"))],
        [(b"ECHO", "bytes name")],
    ],
)
def test_the_bytes_are_redis_pys(commands: list[tuple[Any, ...]]) -> None:
    assert pack(commands, Connection().encoder) == redis_py(commands)


def test_the_connections_encoding_is_used() -> None:
    options = {"encoding": "latin-1", "encoding_errors": "replace"}
    commands = [("ECHO", "café ✓")]
    assert pack(commands, Connection(**options).encoder) == redis_py(commands, **options)


@pytest.mark.parametrize("bad", [True, None, ["a"], {"a": 1}])
def test_what_redis_py_refuses_is_refused_alike(bad: object) -> None:
    with pytest.raises(DataError):
        pack([("ECHO", bad)], Connection().encoder)


def test_a_lone_surrogate_is_refused_as_redis_py_refuses_it() -> None:
    with pytest.raises(UnicodeEncodeError):
        pack([("ECHO", "\ud800")], Connection().encoder)
