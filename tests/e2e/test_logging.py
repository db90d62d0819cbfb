"""``HERALD_LOG_FORMAT=json``: every line a real ``herald serve`` writes is one JSON
object, from the start-up line to the last line of a graceful stop, uvicorn's
own lines included, so a log shipper never meets a line it cannot parse."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import httpx

from tests.helpers.servers import Herald


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "herald wrote no log at all"
    entries = []
    for line in lines:
        entry = json.loads(line)  # raises, and fails the test, on any line that is not JSON
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def test_json_logs_are_one_object_per_line_from_start_up_to_shutdown(herald_factory: Callable[..., Herald]) -> None:
    herald = herald_factory("memory://", "json-replica", HERALD_LOG_FORMAT="json", HERALD_LOG_LEVEL="info")
    assert httpx.get(f"{herald.http}/health", timeout=5).status_code == 200
    assert herald.terminate() in (0, -signal.SIGTERM)

    entries = json_lines(herald.log())
    for entry in entries:
        assert {"ts", "time", "level", "logger", "message"} <= entry.keys(), entry
        assert isinstance(entry["ts"], float)
        assert entry["level"] in {"debug", "info", "warning", "error", "critical"}
    messages = [e["message"] for e in entries]

    startup = next(e for e in entries if "json-replica starting" in e["message"])
    assert startup["level"] == "info"
    assert startup["logger"] == "herald"
    assert "memory://" in startup["message"]  # which Redis it uses (SPEC §2)
    assert any(e["level"] == "warning" and "HERALD_JWT_SECRET" in e["message"] for e in entries)
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # uvicorn's lines go through the same formatter
    assert any("json-replica stopped" in m for m in messages)


def test_text_logs_stay_plain_by_default(herald_factory: Callable[..., Herald]) -> None:
    herald = herald_factory("memory://", "text-replica")
    herald.terminate()
    lines = [line for line in herald.log().splitlines() if line.strip()]
    assert any("text-replica starting" in line for line in lines)
    assert not any(line.startswith("{") for line in lines)
