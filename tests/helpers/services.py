"""Skip-or-fail for tests that need a real binary, free loopback ports, and a replica's URLs."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

REQUIRE_SERVICES_ENV = "HERALD_REQUIRE_SERVICES"


def require(binary: str, why: str) -> str:
    """Path of ``binary`` or skip; with HERALD_REQUIRE_SERVICES=1 (CI) a missing binary fails the test."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if path is None:
        reason = f"{binary} is not installed ({why})"
        if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_SERVICES_ENV}=1 requires it")
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    """A replica on ``127.0.0.1:port``, in a process (``servers.Herald``) or in-process (``inprocess``)."""

    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"
