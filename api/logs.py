"""Logging set-up: plain text, or one JSON object per line (``HERALD_LOG_FORMAT=json``).

Secrets never reach a log line (SPEC §7). Browsers cannot set ``Authorization`` on a WebSocket, so
``?token=`` is the normal way a token travels, and uvicorn prints request paths with their query
strings. Every line the root handler writes, Herald's and uvicorn's (access lines included), is
redacted after formatting, so arguments, tracebacks and JSON fields are all covered: ``token=***``,
``Bearer ***``, and anything shaped like a JWT is ``***``.
"""

from __future__ import annotations

import logging
import re
import time

import orjson

REDACTED = "***"

_SECRETS = re.compile(
    r"(?P<query>token=)[^&\s\"'#\\]+"  # ?token=…, &access_token=… (query strings, form bodies)
    r"|(?P<bearer>bearer\s+)[^\s\"',;\\]+"  # Authorization: Bearer …
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",  # a JWT wherever it appears
    re.IGNORECASE,
)


def _replace(match: re.Match[str]) -> str:
    return (match.group("query") or match.group("bearer") or "") + REDACTED


def redact(text: str) -> str:
    """``text`` without tokens: what may be written to a log."""
    return _SECRETS.sub(_replace, text)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(entry, default=str).decode())


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
