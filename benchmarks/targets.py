"""Starting the three targets: Herald replicas, FastAPI + broadcaster replicas (both on one Redis), raw picows."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from websockets.sync.client import connect

from benchmarks.procs import Proc, ProcessGroup, free_port, wait_port
from benchmarks.topologies import LocalTopology, start_topology
from benchmarks.wire import chat_url

TARGETS = ("herald", "broadcaster", "raw")
#: ``--redis`` topologies other than standalone run Herald as a target of its own, side by side
HERALD_ON = {"sentinel": "herald-sentinel", "cluster": "herald-cluster"}

# The publisher is closed-loop, so Herald's per-client rate limit and send queue must not be what is measured.
HERALD_BENCH_ENV = {
    "HERALD_RATE_LIMIT": "1000000",
    "HERALD_RATE_BURST": "1000000",
    "HERALD_SEND_QUEUE": "100000",
    "HERALD_MAX_CONNECTIONS": "1000000",
    "HERALD_LOG_LEVEL": "warning",
}


@dataclass
class Running:
    """A started (or attached) target: the chat ports to connect to, and the processes to sample."""

    name: str
    ports: list[int]
    server_pids: list[int]  # one per port when known; empty when attached to servers we cannot see
    redis: LocalTopology | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def redis_pids(self) -> list[int]:
        return self.redis.data_pids if self.redis is not None else []


def herald_command() -> list[str]:
    script = Path(sys.executable).parent / "herald"
    return [str(script)] if script.exists() else [sys.executable, "-m", "api"]


def _probe(proc: Proc, port: int, timeout: float = 20.0) -> None:
    """Ready means a chat socket opens and says welcome, not merely that the port listens."""
    wait_port(proc, port, timeout)
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with connect(chat_url(port, "bench-probe", "probe"), open_timeout=5, close_timeout=1) as ws:
                ws.recv(timeout=5)
                return
        except Exception as exc:  # any failure: retry until the deadline, then report the last one
            error = exc
            if proc.popen.poll() is not None:
                break
            time.sleep(0.2)
    raise RuntimeError(f"{proc.name} on port {port} is not serving chat ({error!r}):\n{proc.log_tail()}")


def redis_of(name: str) -> str:
    """The Redis topology a target runs on: ``herald-cluster`` -> ``cluster``; the others, standalone."""
    return next((kind for kind, target in HERALD_ON.items() if target == name), "standalone")


def start_target(name: str, replicas: int, group: ProcessGroup, env: dict[str, str] | None = None) -> Running:
    if name == "raw":
        return _start_raw(group)
    redis = start_topology(redis_of(name), group)
    redis_url = redis.url
    servers: list[Proc] = []
    ports: list[int] = []
    for i in range(1, replicas + 1):
        port = free_port()
        if name == "herald" or name in HERALD_ON.values():
            argv = [*herald_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--redis-url", redis_url, "--replica-id", f"r{i}"]
            proc = group.start(f"{name}-r{i}", argv, env=HERALD_BENCH_ENV | (env or {}))
        elif name == "broadcaster":
            argv = [sys.executable, "-m", "uvicorn", "benchmarks.peer_broadcaster:app", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
            env = {"PEER_REDIS_URL": redis_url, "PEER_REPLICA_ID": f"b{i}"}
            proc = group.start(f"broadcaster-b{i}", argv, env=env)
        else:
            raise ValueError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
        servers.append(proc)
        ports.append(port)
    for proc, port in zip(servers, ports, strict=True):
        _probe(proc, port)
    return Running(name, ports, [p.pid for p in servers], redis)


def _start_raw(group: ProcessGroup) -> Running:
    port = free_port()
    # benchmarks/ is an installed package (the bench extra), so the same interpreter finds it anywhere.
    proc = group.start("raw", [sys.executable, "-m", "benchmarks.baseline_picows", "--port", str(port)])
    _probe(proc, port)
    note = "raw is one process without Redis: 'replica A' and 'replica B' are the same process"
    return Running("raw", [port], [proc.pid], None, notes=[note])


def herald_available() -> str | None:
    """None when ``herald serve`` looks runnable, else why not."""
    import subprocess

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([*herald_command(), "--help"], capture_output=True, timeout=30, text=True)
        if out.returncode == 0 and "serve" in out.stdout:
            return None
        return f"`herald --help` exited {out.returncode}: {(out.stderr or out.stdout).strip()[-300:]}"
    return "the herald command could not be run"


def attach(name: str, ports: list[int]) -> Running:
    """Target servers someone else started (e.g. docker compose); CPU and RSS only if their PIDs are visible."""
    pids = [pid for pid in (listening_pid(port) for port in ports) if pid is not None]
    notes = [f"attached to ports {ports}: not restarted between workloads, so W3's RSS figure reuses a warm heap"]
    if len(pids) != len(ports):
        notes.append("server processes not visible: CPU and RSS figures are missing")
        pids = []
    return Running(name, ports, pids, None, notes=notes)


def listening_pid(port: int) -> int | None:
    """The PID holding a listening TCP socket on ``port``, found through /proc (Linux)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(f"socket:[{cols[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
    return None
