"""The chat-protocol subset every target speaks, and the payload the load generator embeds.

A bench message's text is ``~<pubid>:<seq>:<t_ns>:xxxx…`` padded to the message size. The marker is
searched in the raw frame bytes, so the same parser works on chat ``message`` frames and on GraphQL
``next`` frames whatever their key order or spacing, without decoding the JSON.
"""

from __future__ import annotations

import re
import time

import orjson

MARK = re.compile(rb"~([A-Za-z0-9_-]+):(\d+):(\d+):")
WARM_PUBID = b"warm"


def bench_text(pubid: str, seq: int, size: int, t_ns: int | None = None) -> str:
    """The text of one bench message, padded with ``x`` to ``size`` characters."""
    head = f"~{pubid}:{seq}:{time.monotonic_ns() if t_ns is None else t_ns}:"
    return head + "x" * max(0, size - len(head))


def chat_send_frame(text: str) -> bytes:
    """Client -> server chat frame."""
    return orjson.dumps({"type": "message", "text": text})


def gql_init_frame() -> bytes:
    return b'{"type":"connection_init","payload":{}}'


def chat_message_query(room: str) -> str:
    # The room is a literal, not a variable, so every subscriber sends the identical document that a
    # replica may execute once per event for all of them (SPEC §5).
    return f'subscription {{ chatMessage(room: "{room}") {{ id text }} }}'


def gql_subscribe_frame(op_id: str, room: str) -> bytes:
    return orjson.dumps({"id": op_id, "type": "subscribe", "payload": {"query": chat_message_query(room)}})


def chat_url(port: int, room: str, user: str) -> str:
    return f"ws://127.0.0.1:{port}/ws/chat/{room}?user={user}"


def graphql_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/graphql"
