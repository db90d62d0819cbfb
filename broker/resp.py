"""RESP2 request encoding for the publisher's commands, by hand: one ``bytes`` per batch.

redis-py's ``pack_commands`` builds each argument through its ``Encoder`` and a ``join`` per argument,
and showed up as a sizeable share of a publish in the W4 profile (README, "Benchmarks"). A publish is
one EVALSHA of a dozen short arguments; this writes the same bytes (``*<n>\\r\\n`` then ``$<len>\\r\\n<arg>\\r\\n``
per argument, RESP's request form) with one ``join`` per batch. The arguments are those redis-py accepts,
with its rules: ``str`` encoded with the connection's encoding, ``int`` as its decimal text, ``bytes`` as
is; anything else (``float``, ``bool``, other types) goes through redis-py's own ``Encoder``, which
encodes floats with ``repr`` and refuses the rest with ``DataError``, as a pipeline would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis._parsers.encoders import Encoder


def pack(commands: Sequence[Sequence[Any]], encoder: Encoder) -> bytes:
    """The RESP request bytes of ``commands`` (each a command name, then its arguments) back to back.

    A command name with spaces is sent as several words, as redis-py does (``"SCRIPT LOAD"``)."""
    encoding, errors = encoder.encoding, encoder.encoding_errors
    parts: list[bytes] = []
    add = parts.append
    for command in commands:
        name, args = command[0], command[1:]
        words = name.encode(encoding, errors).split() if isinstance(name, str) else bytes(encoder.encode(name)).split()  # type: ignore[no-untyped-call]
        add(b"*%d\r\n" % (len(words) + len(args)))
        for word in words:
            add(b"$%d\r\n%b\r\n" % (len(word), word))
        for arg in args:
            kind = type(arg)
            if kind is str:
                data = arg.encode(encoding, errors)
            elif kind is int:
                data = b"%d" % arg
            elif kind is bytes:
                data = arg
            else:
                data = bytes(encoder.encode(arg))  # type: ignore[no-untyped-call]
            add(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)
