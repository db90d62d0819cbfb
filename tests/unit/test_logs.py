"""SPEC §7: a token never reaches a log line, whatever logger wrote it and in whichever format."""

from __future__ import annotations

import json
import logging

from hypothesis import given
from hypothesis import strategies as st

from api.auth import Auth
from api.logs import JsonFormatter, TextFormatter, redact

TOKEN = Auth("log-secret-" + "x" * 40).issue("alice", ttl_s=60)


def record(logger: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(logger, logging.INFO, __file__, 1, msg, args, None)


def test_uvicorn_access_and_websocket_lines_are_redacted() -> None:
    access = record(
        "uvicorn.access", '%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", f"/api/x?a=1&token={TOKEN}", "1.1", 200
    )
    accepted = record(
        "uvicorn.error", '%s - "WebSocket %s" [accepted]', "1.2.3.4:5", f"/ws/chat/r?token={TOKEN}&since=0"
    )
    for formatter in (TextFormatter("%(message)s"), JsonFormatter()):
        for line in (formatter.format(access), formatter.format(accepted)):
            assert TOKEN not in line and TOKEN.split(".")[2] not in line
            assert "token=***" in line
    assert json.loads(JsonFormatter().format(accepted))["message"].endswith('?token=***&since=0" [accepted]')


def test_bearer_headers_and_bare_jwts_are_redacted_in_messages_and_tracebacks() -> None:
    assert redact(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer ***"
    assert redact(f'{{"token": "{TOKEN}"}}') == '{"token": "***"}'
    try:
        raise ValueError(f"bad {TOKEN}")
    except ValueError:
        failed = logging.LogRecord("herald", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    for formatter in (TextFormatter("%(message)s"), JsonFormatter()):
        assert TOKEN not in formatter.format(failed)


@given(
    secret=st.text(alphabet=st.characters(whitelist_categories=["L", "N"], whitelist_characters="-_.~+/="), min_size=8)
)
def test_anything_after_token_equals_is_redacted(secret: str) -> None:
    line = redact(f"GET /ws/chat/r?since=1&token={secret}&user=bob HTTP/1.1")
    assert secret not in line.replace("token=***", "")
    assert line == "GET /ws/chat/r?since=1&token=***&user=bob HTTP/1.1"
