"""A load-generator worker process: opens its share of sockets, publishes, counts, reports over a pipe.

The coordinator (benchmarks.coordinator) drives every worker through the same steps, so sockets spread
over several processes behave as one load generator::

                                                   worker -> ("ready",) once started
    coordinator -> ("connect", "leaders"|"rest")   worker -> ("connected", ok, failed, first_error)
    coordinator -> ("warm",)                       worker -> ("warm_ok", not_warmed)   publishers send warm-ups
    coordinator -> ("go", t_start_ns, t_end_ns)    worker -> ("published", {pubid: (room, count)}) after t_end
    coordinator -> ("expect", {pubid: (room, count)})  worker -> ("stats", {...}) once drained
    coordinator -> ("close",)                      worker closes its sockets and exits
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from benchmarks.clients import OPENERS, Conn, ConnSpec
from benchmarks.wire import bench_text, chat_send_frame

WARM_EVERY_S = 0.1
WARM_ROOMS_PER_TICK = 10
RESEND_AFTER_NS = 2_000_000_000  # a closed-loop message unacknowledged this long is replaced, not waited for
RESUME_ATTEMPTS = 10  # W7: tries to reconnect elsewhere before a client gives up


@dataclass
class PubSpec:
    conns: list[int]  # indexes into WorkerPlan.conns, used round-robin; one pubid per room
    window: int = 0  # closed loop: messages in flight, each freed when a local `acks` socket receives it
    rate: float = 0.0  # open loop: messages per second


@dataclass
class WorkerPlan:
    index: int
    conns: list[ConnSpec]
    publishers: list[PubSpec] = field(default_factory=list)
    size: int = 100
    client: str = "picows"
    lat_mask: int = 0  # latency is sampled for seq & lat_mask == 0
    concurrency: int = 64  # handshakes in flight
    drain_timeout: float = 5.0
    quiet: float = 1.0  # drain also ends after this long without any frame


class Publisher:
    def __init__(self, worker: Worker, index: int, spec: PubSpec) -> None:
        self.worker = worker
        self.spec = spec
        self.conns = [worker.conns[i] for i in spec.conns]
        rooms = list(dict.fromkeys(c.room for c in self.conns))
        self.pubid_of = {room: f"w{worker.plan.index}p{index}r{k}" for k, room in enumerate(rooms)}
        self.count = dict.fromkeys(self.pubid_of.values(), 0)
        self.next_conn = 0
        self.stopped = False
        self.stalls = 0

    def send_next(self) -> None:
        conn = self.conns[self.next_conn % len(self.conns)]
        self.next_conn += 1
        pubid = self.pubid_of[conn.room]
        seq = self.count[pubid]
        self.count[pubid] = seq + 1
        if self.spec.window:
            self.worker.outstanding[(pubid.encode(), seq)] = self
            self.worker.sent_at[(pubid.encode(), seq)] = time.monotonic_ns()
        conn.send(chat_send_frame(bench_text(pubid, seq, self.worker.plan.size)))

    def on_ack(self) -> None:
        if not self.stopped:
            self.send_next()

    def send_warm(self, seq: int) -> None:
        """One warm-up message to the next few rooms: a burst to every room at once would be a load test of its
        own (FastAPI + broadcaster closes sockets once 100 publishes wait for a Redis connection)."""
        rooms = list(self.pubid_of)
        for k in range(min(len(rooms), WARM_ROOMS_PER_TICK)):
            room = rooms[(seq * WARM_ROOMS_PER_TICK + k) % len(rooms)]
            conn = next(c for c in self.conns if c.room == room)
            conn.send(chat_send_frame(bench_text("warm", seq, self.worker.plan.size)))

    async def run(self, t_start: int, t_end: int) -> None:
        await asyncio.sleep(max(0.0, (t_start - time.monotonic_ns()) / 1e9))
        if self.spec.window:
            for _ in range(self.spec.window):
                self.send_next()
            while time.monotonic_ns() < t_end:
                await asyncio.sleep(0.2)
                self._replace_stalled()
            return
        interval = 1e9 / self.spec.rate
        sent = 0
        while (now := time.monotonic_ns()) < t_end:
            due = t_start + sent * interval
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
                continue
            self.send_next()  # when late, catch up back to back: the schedule, not the server, sets the rate
            sent += 1

    def _replace_stalled(self) -> None:
        now = time.monotonic_ns()
        for key, sent in list(self.worker.sent_at.items()):
            if self.worker.outstanding.get(key) is not self:
                self.worker.sent_at.pop(key, None)
            elif now - sent > RESEND_AFTER_NS:
                self.worker.outstanding.pop(key, None)
                self.worker.sent_at.pop(key, None)
                self.stalls += 1
                self.send_next()


class Worker:
    def __init__(self, pipe: Connection, plan: WorkerPlan) -> None:
        self.pipe = pipe
        self.plan = plan
        self.lat_mask = plan.lat_mask
        self.frames = 0
        self.window_uniq = 0
        self.closing = False
        self.outstanding: dict[tuple[bytes, int], Publisher] = {}
        self.sent_at: dict[tuple[bytes, int], int] = {}
        self.unexpected: list[str] = []
        self.conns: list[Conn] = []
        self.publishers: list[Publisher] = []
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._resuming: set[asyncio.Task[None]] = set()
        self.resume_failures = 0
        self.resume_gave_up = 0

    async def run(self) -> None:
        self.conns = [Conn(self, spec) for spec in self.plan.conns]
        self.publishers = [Publisher(self, i, spec) for i, spec in enumerate(self.plan.publishers)]
        reader = asyncio.create_task(self._read_pipe())
        self.pipe.send(("ready",))
        warm: asyncio.Task[None] | None = None
        while True:
            msg = await self.inbox.get()
            if msg[0] == "connect":
                self.pipe.send(("connected", *await self.connect(leaders=msg[1] == "leaders")))
            elif msg[0] == "warm":
                warm = asyncio.create_task(self.warm())
            elif msg[0] == "go":
                if warm is not None:
                    warm.cancel()
                self.pipe.send(("published", await self.publish(msg[1], msg[2])))
            elif msg[0] == "expect":
                self.pipe.send(("stats", await self.drain(msg[1])))
            elif msg[0] == "close":
                self.closing = True
                for conn in self.conns:
                    with contextlib.suppress(Exception):
                        conn.close()
                await asyncio.sleep(0.2)
                await reader
                return

    def resume_elsewhere(self, conn: Conn) -> None:
        """W7: ``conn``'s replica died; reconnect to its failover URL with ``since``, as a client library does
        (full-jitter backoff from 0.5 s, doubling)."""
        self._resuming.add(asyncio.get_running_loop().create_task(self._resume(conn)))

    async def _resume(self, conn: Conn) -> None:
        opener = OPENERS[self.plan.client]
        failover = conn.spec.failover
        assert failover is not None
        since = conn.last_offset.decode() if conn.last_offset is not None else "0"
        conn.spec.url = f"{failover}&since={since}"
        delay = 0.5
        for _ in range(RESUME_ATTEMPTS):
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(5.0, 2 * delay)
            try:
                await opener(conn)
                return
            except Exception:  # refused or reset during the storm: try again later
                self.resume_failures += 1
        self.resume_gave_up += 1

    async def _read_pipe(self) -> None:
        # A blocking recv in a thread: uvloop's add_reader would make the pipe non-blocking, and then a large
        # "stats" answer fails to send with EAGAIN.
        loop = asyncio.get_running_loop()
        while True:
            try:
                msg = await loop.run_in_executor(None, self.pipe.recv)
            except (EOFError, OSError):  # the coordinator is gone
                msg = ("close",)
            self.inbox.put_nowait(msg)
            if msg[0] == "close":
                return

    async def connect(self, leaders: bool) -> tuple[int, int, str]:
        """Open this phase's sockets; leaders go first so no server sees two first subscribers of a channel
        at once (encode/broadcaster loses one of them when that happens)."""
        opener = OPENERS[self.plan.client]
        limit = asyncio.Semaphore(self.plan.concurrency)

        async def open_one(conn: Conn) -> None:
            async with limit:
                await opener(conn)
                await asyncio.wait_for(asyncio.shield(conn.ready), 20)

        todo = [c for c in self.conns if c.spec.leader == leaders]
        results = await asyncio.gather(*(open_one(c) for c in todo), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        return len(todo) - len(errors), len(errors), repr(errors[0]) if errors else ""

    async def warm(self) -> None:
        """Publish warm-up messages until every local subscriber has one: proof that its subscription is live
        on its replica (GraphQL has no subscribe acknowledgement)."""
        subscribers = [c for c in self.conns if c.spec.subscriber]
        reported = False
        seq = 0
        while True:
            for publisher in self.publishers:
                publisher.send_warm(seq)
            seq += 1
            if not reported and all(c.warmed for c in subscribers):
                self.pipe.send(("warm_ok", 0))
                reported = True
            await asyncio.sleep(WARM_EVERY_S)

    async def publish(self, t_start: int, t_end: int) -> dict[str, tuple[str, int]]:
        tasks = [asyncio.create_task(p.run(t_start, t_end)) for p in self.publishers]
        await asyncio.sleep(max(0.0, (t_end - time.monotonic_ns()) / 1e9))
        for publisher in self.publishers:
            publisher.stopped = True
        self.window_uniq = sum(c.uniq for c in self.conns if c.spec.subscriber)
        self.outstanding.clear()
        await asyncio.gather(*tasks)
        return {pubid: (room, p.count[pubid]) for p in self.publishers for room, pubid in p.pubid_of.items()}

    async def drain(self, published: dict[str, tuple[str, int]]) -> dict[str, Any]:
        per_room: dict[str, int] = {}
        for room, count in published.values():
            per_room[room] = per_room.get(room, 0) + count
        subscribers = [c for c in self.conns if c.spec.subscriber]
        expected = sum(per_room.get(c.room, 0) for c in subscribers)
        started = time.monotonic()
        seen, quiet_since = self.frames, started
        while time.monotonic() - started < self.plan.drain_timeout:
            if all(c.uniq >= per_room.get(c.room, 0) for c in subscribers):
                break
            await asyncio.sleep(0.05)
            if self.frames != seen:
                seen, quiet_since = self.frames, time.monotonic()
            elif time.monotonic() - quiet_since > self.plan.quiet:
                break
        lat = [c.lat for c in subscribers]
        return {
            "subscribers": len(subscribers),
            "expected": expected,
            "window": self.window_uniq,
            "received": sum(c.uniq for c in subscribers),
            "duplicates": sum(c.dups for c in subscribers),
            "dropped": sum(c.dropped for c in self.conns),
            "not_warmed": sum(not c.warmed for c in subscribers),
            "stalls": sum(p.stalls for p in self.publishers),
            "drain_s": time.monotonic() - started,
            "latency_us": b"".join(a.tobytes() for a in lat),
            "unexpected": self.unexpected,
            "resumed_ns": [c.resumed_ns for c in self.conns if c.resumed_ns],
            "resumed_gaps": sum(c.resumed_gap for c in self.conns),
            "resume_failures": self.resume_failures,
            "resume_gave_up": self.resume_gave_up,
        }


def worker_main(pipe: Connection, plan: WorkerPlan) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    try:
        import uvloop

        uvloop.run(Worker(pipe, plan).run())
    except ImportError:
        asyncio.run(Worker(pipe, plan).run())
