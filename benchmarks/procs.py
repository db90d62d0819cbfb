"""Subprocesses the bench starts (redis-server, replicas), stopped by PID, and what /proc says about them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_fd_limit() -> None:
    """Thousands of sockets per process need more than the usual soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process (10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def with_children(pids: list[int]) -> list[int]:
    """``pids`` and their children (``herald serve --workers`` serves in forked workers, not in the parent)."""
    found = list(pids)
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as f:
            found += [int(child) for child in f.read().split()]
    return found


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE_KB


def _die_with_parent() -> None:
    # Linux only: if the bench is killed outright, its servers get SIGTERM instead of lingering.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class ProcessGroup:
    """Everything one target needs; ``stop()`` (or leaving the ``with``) ends each process by its PID."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[Proc] = []

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Proc:
        log = self.logdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,  # Ctrl-C reaches the bench, which then stops these itself
                preexec_fn=_die_with_parent,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop(self, grace: float = 10.0) -> None:
        """Replicas first (all at once), Redis last, so no replica's shutdown meets a vanished Redis."""
        redis = [p for p in self.procs if p.name.startswith("redis")]
        for batch in ([p for p in self.procs if p not in redis], redis):
            for proc in batch:
                if proc.popen.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for proc in batch:
                try:
                    proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                    proc.popen.wait(timeout=5)
        self.procs.clear()


def wait_port(proc: Proc, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen on port {port} within {timeout:.0f}s:\n{proc.log_tail()}")
