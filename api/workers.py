"""``herald serve --workers N``: N replicas in one process tree (one container), one per core.

One Python process runs on one core, so a replica cannot use a second one. Each worker here is a complete
replica — its own event loop, its own pub/sub connection and publish connection to Redis, its own replica
id (``<id>-w1`` … ``<id>-wN``, so presence members and control channels never collide) — exactly as if it
were another container; they only share the port. Each worker binds it with ``SO_REUSEPORT``, so the
kernel spreads new connections evenly over them (one shared accept queue lets whichever worker wakes first
take a burst).

The parent does no serving. It forks the workers before any event loop exists, forwards SIGTERM and SIGINT
to them (each drains as a replica does: 1012 to its sockets, exit within ``HERALD_SHUTDOWN_GRACE_S``), kills
any still running a little after that, and exits 0 once all are gone. A worker that dies on its own is
started again (at most once a second), so one crash does not halve a container for good.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

from api.settings import Settings

log = logging.getLogger("herald")

#: a worker that died on its own is started again no sooner than this after its last start
RESTART_EVERY_S = 1.0
#: how long past the shutdown grace the parent waits before it kills a worker
KILL_AFTER_S = 2.0


def worker_id(replica_id: str, index: int) -> str:
    return f"{replica_id}-w{index}"


def check_port(host: str, port: int) -> None:
    """Raise ``OSError`` when the port cannot be bound with ``SO_REUSEPORT`` (taken by something else)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, port))


def supervise(settings: Settings, count: int, serve_one: Callable[[Settings], int]) -> int:
    """Fork ``count`` workers running ``serve_one`` and wait for them; returns the exit status."""
    workers: dict[int, int] = {}  # pid -> index
    started: dict[int, float] = {}  # index -> when
    stopping = False

    def start(index: int) -> None:
        one = settings.model_copy(update={"replica_id": worker_id(settings.replica_id, index)})
        pid = os.fork()
        if pid == 0:  # the worker: serve, then leave without running the parent's clean-up
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            status = 1
            try:
                status = serve_one(one)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker %s failed", one.replica_id)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        workers[pid] = index
        started[index] = time.monotonic()

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(workers):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(1, count + 1):
        start(index)
    log.info("herald: %d workers serving %s:%d", count, settings.host, settings.port)
    deadline: float | None = None
    status = 0
    while workers:
        if stopping and deadline is None:
            deadline = time.monotonic() + settings.shutdown_grace_s + KILL_AFTER_S
        if deadline is not None and time.monotonic() > deadline:
            for pid in list(workers):
                log.error("worker %d outlived the shutdown grace; killing it", pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5  # reaped below
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
            continue
        index = workers.pop(pid, 0)
        if not index:
            continue
        exit_status = os.waitstatus_to_exitcode(code)
        if exit_status == 2 and not stopping:  # a refusal (cannot listen, bad settings): retrying cannot help
            log.error("worker %s refused to start; stopping", worker_id(settings.replica_id, index))
            stop(signal.SIGTERM, None)
            status = 2
            continue
        if stopping:
            if exit_status not in (0, -signal.SIGTERM):
                status = status or 1
            continue
        log.error("worker %s exited (%d); starting it again", worker_id(settings.replica_id, index), exit_status)
        time.sleep(max(0.0, started[index] + RESTART_EVERY_S - time.monotonic()))
        start(index)
    return status
