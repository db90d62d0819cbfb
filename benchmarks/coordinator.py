"""Runs one workload against one started target: spawns the load-generator processes, steps them through
connect / warm / go / drain, samples the servers' CPU and RSS, and turns their counts into metrics."""

from __future__ import annotations

import multiprocessing as mp
import time
from array import array
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from benchmarks.loadgen import worker_main
from benchmarks.procs import cpu_split, rss_kb, with_children
from benchmarks.redis_stats import command_counts, per_publish, pubsub_connections
from benchmarks.spread import IDLE_S, snapshot, spread
from benchmarks.storm import kill_later, storm_figures
from benchmarks.targets import Running
from benchmarks.workloads import Workload

Tick = Callable[[str], None]


class Workers:
    """The load-generator processes of one workload, stopped by PID however the run ends."""

    def __init__(self, workload: Workload, tick: Tick) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited sockets, loops or log files
        self.tick = tick
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for plan in workload.plans:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, plan), daemon=True, name=f"loadgen-{plan.index}")
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("close",))
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for proc in self.procs:
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()

    def ask(self, message: tuple[Any, ...], answer: str, timeout: float, label: str) -> list[tuple[Any, ...]]:
        for pipe in self.pipes:
            pipe.send(message)
        return self.gather(answer, timeout, label)

    def gather(self, answer: str, timeout: float, label: str) -> list[tuple[Any, ...]]:
        replies: list[tuple[Any, ...] | None] = [None] * len(self.pipes)
        deadline = time.monotonic() + timeout
        while any(r is None for r in replies):
            if time.monotonic() > deadline:
                raise TimeoutError(f"load generator did not answer {answer!r} within {timeout:.0f}s")
            for i, pipe in enumerate(self.pipes):
                if replies[i] is None and pipe.poll():
                    try:
                        msg = pipe.recv()
                    except EOFError:
                        raise RuntimeError(f"load generator {i} exited (code {self.procs[i].exitcode})") from None
                    if msg[0] == answer:
                        replies[i] = msg
                    elif msg[0] != "warm_ok":  # a late warm-up answer after the coordinator moved on
                        raise RuntimeError(f"load generator answered {msg[0]!r}, expected {answer!r}")
                elif replies[i] is None and not self.procs[i].is_alive():
                    raise RuntimeError(f"load generator {i} died (exit code {self.procs[i].exitcode})")
            self.tick(label)
            wait(self.pipes, timeout=0.2)
        return [r for r in replies if r is not None]


class CpuMeter:
    """User and system CPU seconds a set of processes spends between ``start()`` and ``read()``."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = with_children(pids)
        self.base = self._now()

    def _now(self) -> tuple[float, float]:
        user = system = 0.0
        for pid in self.pids:
            try:
                u, s = cpu_split(pid)
            except OSError:
                continue  # already gone
            user, system = user + u, system + s
        return user, system

    def read(self) -> tuple[float, float]:
        user, system = self._now()
        return user - self.base[0], system - self.base[1]


def run_workload(workload: Workload, target: Running, tick: Tick, warm_timeout: float = 10.0) -> dict[str, Any]:
    with Workers(workload, tick) as workers:
        workers.gather("ready", 60, "starting load generator")
        rss_before = _rss(target.server_pids[:1])
        connect_cpu = CpuMeter(target.server_pids)
        started = time.monotonic()
        result = _connect(workers, workload)
        connect_s = time.monotonic() - started
        if workload.idle:
            user, system = connect_cpu.read()
            time.sleep(1.0)  # let lazily allocated per-connection state (timers, presence entries) appear
            rss_after = _rss(target.server_pids[:1])
            opened = max(1, result["connections"])
            known = rss_before is not None and rss_after is not None
            figures = _heartbeats(workload, target) if workload.heartbeat_window else {}
            return (
                result
                | figures
                | {
                    "connect_s": connect_s,
                    "connects_per_s": result["connections"] / connect_s,
                    "rss_before_kb": rss_before,
                    "rss_after_kb": rss_after,
                    "rss_per_conn_kb": (rss_after - rss_before) / opened if rss_after and rss_before else None,
                    "server_cpu_us_per_connect": (user + system) * 1e6 / opened if known else None,
                }
            )
        if result["connect_failures"]:
            failed, total = result["connect_failures"], result["connect_failures"] + result["connections"]
            raise RuntimeError(f"{failed} of {total} sockets failed to open: {result['connect_errors'][0]}")
        try:
            workers.ask(("warm",), "warm_ok", warm_timeout, "warming up")
        except TimeoutError:
            result["warm_timeout"] = True  # the subscribers left cold show up as lost deliveries
        return result | _traffic(workers, workload, target)


def _heartbeats(workload: Workload, target: Running) -> dict[str, Any]:
    """Server CPU while the connections only get heartbeats (every ``heartbeat_s``), per connection and round."""
    meter = CpuMeter(target.server_pids[:1])
    time.sleep(workload.heartbeat_window)
    cpu = sum(meter.read())
    rounds = workload.heartbeat_window / workload.heartbeat_s
    connections = workload.connections
    return {
        "heartbeat_s": workload.heartbeat_s,
        "idle_cpu_share": cpu / workload.heartbeat_window,  # of one core
        "heartbeat_cpu_us_per_connection": cpu * 1e6 / (rounds * connections) if connections else None,
        # at the default HERALD_HEARTBEAT_S (30 s): the share of one core heartbeats cost at this scale
        "idle_cpu_share_at_30s": cpu / workload.heartbeat_window * workload.heartbeat_s / 30,
    }


def _connect(workers: Workers, workload: Workload) -> dict[str, Any]:
    opened = failed = 0
    errors: list[str] = []
    for phase in ("leaders", "rest"):
        timeout = 60 + workload.connections / 20
        for _, ok, bad, error in workers.ask(("connect", phase), "connected", timeout, "connecting"):
            opened, failed = opened + ok, failed + bad
            if error:
                errors.append(error)
    return {"connections": opened, "connect_failures": failed, "connect_errors": errors[:3]}


def _traffic(workers: Workers, workload: Workload, target: Running) -> dict[str, Any]:
    masters = target.redis.masters if target.redis is not None else []
    idle = snapshot(masters)
    if masters:
        time.sleep(IDLE_S)  # what the masters burn with nothing published (cron, cluster bus, probes)
    before = snapshot(masters)
    t_start = time.monotonic_ns() + 100_000_000  # every worker starts publishing at the same instant
    t_end = t_start + int(workload.duration * 1e9)
    servers, redis, loadgen = CpuMeter(target.server_pids), CpuMeter(target.redis_pids), CpuMeter(workers.pids)
    commands_before = command_counts(masters)
    published: dict[str, tuple[str, int]] = {}
    killed_at = kill_later(target, t_start, workload.kill_after) if workload.kill_after else None
    for _, counts in workers.ask(("go", t_start, t_end), "published", workload.duration + 30, "running"):
        published.update(counts)
    if killed_at is not None:
        killed_at.join()
    redis_figures = per_publish(commands_before, command_counts(masters), sum(n for _, n in published.values()))
    redis_figures["redis_pubsub_connections"] = pubsub_connections(masters)
    drain_timeout = max(p.drain_timeout for p in workload.plans)
    stats = [s for _, s in workers.ask(("expect", published), "stats", drain_timeout + 30, "draining")]
    metrics = _metrics(workload.duration, published, stats, servers.read(), sum(redis.read()), sum(loadgen.read()))
    if target.redis is not None:
        # Read while the subscribers are still connected: their channels and connections are on the masters.
        after = snapshot(masters)
        time.sleep(IDLE_S)  # a second quiet window: the lower of the two is the idle share
        quiet = (idle, before), (after, snapshot(masters))
        metrics["redis_topology"] = target.redis.kind
        metrics["redis_masters"] = spread(quiet, before, after, sharded=target.redis.kind == "cluster")
    if killed_at is not None:
        metrics |= storm_figures(killed_at.at_ns, stats, sum(1 for p in workload.plans for c in p.conns if c.failover))
    return metrics | redis_figures | {"replicas": len(target.ports), "redis_masters_count": len(masters)}


def _metrics(
    duration: float,
    published: dict[str, tuple[str, int]],
    stats: list[dict[str, Any]],
    server_cpu: tuple[float, float],
    redis_cpu: float,
    gen_cpu: float,
) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(s[key]) for s in stats)

    received, expected, window = total("received"), total("expected"), total("window")
    latencies = array("q")
    for s in stats:
        latencies.frombytes(s["latency_us"])
    cpu = sum(server_cpu)
    sent = sum(count for _, count in published.values())
    return {
        "published": sent,
        "subscribers": total("subscribers"),
        "published_per_s": sent / duration,
        "deliveries_per_s": window / duration,
        "expected": expected,
        "received": received,
        "lost": expected - received,
        "duplicates": total("duplicates"),
        "backlog_at_end": max(0, expected - window),
        "dropped_sockets": total("dropped"),
        "not_warmed": total("not_warmed"),
        "resent_stalled": total("stalls"),
        "drain_s": max(float(s["drain_s"]) for s in stats),
        "latency_ms": _percentiles(sorted(latencies)),
        "server_cpu_s": cpu,
        "server_cpu_system_share": server_cpu[1] / cpu if cpu else None,
        "server_cpu_us_per_delivery": cpu * 1e6 / received if received else None,
        "server_cpu_us_per_publish": cpu * 1e6 / sent if sent else None,
        "redis_cpu_s": redis_cpu,
        "loadgen_cpu_s": gen_cpu,
        "loadgen_cpu_us_per_delivery": gen_cpu * 1e6 / received if received else None,
        "unexpected_frames": [u for s in stats for u in s["unexpected"]][:5],
    }


def _percentiles(lat: list[int]) -> dict[str, float | None]:
    if not lat:
        return {"p50": None, "p99": None, "max": None, "samples": 0}

    def pick(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000

    return {"p50": pick(0.5), "p99": pick(0.99), "max": lat[-1] / 1000, "samples": len(lat)}


def _rss(pids: list[int]) -> int | None:
    try:
        return sum(rss_kb(pid) for pid in with_children(pids)) if pids else None
    except OSError:
        return None
