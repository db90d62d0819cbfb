"""Real processes for tests: a private ``redis-server`` and ``herald serve`` replicas.

Each is started on a free loopback port, waited for with a bounded poll, and
stopped by its PID (SIGTERM, then SIGKILL), so fault tests can kill and
restart them without touching anyone else's services.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import redis

from tests.helpers.services import Served, free_port, require

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


class RedisServer:
    def __init__(
        self, workdir: Path, port: int | None = None, extra_args: Sequence[str] = (), config: Path | None = None
    ) -> None:
        self.binary = require("redis-server", "apt-get install redis-server")
        self.port = port or free_port()
        self.workdir = workdir
        #: appended to the command line (cluster mode, ``--replicaof``, ``--sentinel``)
        self.extra_args = list(extra_args)
        #: a config file, first on the command line (a sentinel needs a writable one)
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def signal(self, sig: int) -> None:
        """Send ``sig`` (SIGSTOP, SIGCONT...) to this server alone, by its PID."""
        assert self.process is not None, "not running"
        self.process.send_signal(sig)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                *([str(self.config)] if self.config is not None else []),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / "redis.log"),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:  # it will not start: say why (a port taken, say) at once
                raise RuntimeError(f"redis-server on port {self.port} exited: {self._log_tail()}")
            try:
                with self.client() as client:
                    if client.ping():
                        return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self._log_tail()}")

    def _log_tail(self) -> str:
        log = self.workdir / "redis.log"
        return log.read_text(errors="replace")[-500:] if log.exists() else "(no log)"

    def kill(self) -> None:
        """Like a crash: SIGKILL, nothing saved."""
        if self.process is not None:
            _stop(self.process, signal.SIGKILL)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a SIGSTOPped server would never see the SIGTERM
            _stop(self.process)
            self.process = None


class Herald(Served):
    """One ``herald serve`` process."""

    def __init__(self, logdir: Path, redis_url: str, replica_id: str, **env: str) -> None:
        self.port = free_port()
        self.replica_id = replica_id
        self.redis_url = redis_url
        self.log_path = logdir / f"herald-{replica_id}-{self.port}.log"
        self.env = {**os.environ, "HERALD_LOG_LEVEL": "info", **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Herald:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # the child holds its own descriptor of the log: ours is closed at once
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "api",
                    "serve",
                    "--port",
                    str(self.port),
                    "--redis-url",
                    self.redis_url,
                    "--replica-id",
                    self.replica_id,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"herald exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.http}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"herald did not start:\n{self.log()}")

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait: the graceful path. Returns the exit status."""
        assert self.process is not None
        code = _stop(self.process, signal.SIGTERM, timeout)
        self.process = None
        return code

    def kill(self) -> int:
        """SIGKILL and wait: the replica dies mid-stream, no close frame, no goodbye."""
        assert self.process is not None
        code = _stop(self.process, signal.SIGKILL)
        self.process = None
        return code

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        """SIGSTOP for the block, SIGCONT after it whatever happens: a stalled replica, its loop reads nothing."""
        assert self.process is not None, "not running"
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
