"""How a workload's publishes and subscriptions spread over the Redis masters, and what each publish cost them.

Read from the masters themselves around the publishing window: ``INFO commandstats`` (XADD calls: one per
stored publish; EVALSHA time), ``INFO cpu``, and while the subscribers are still connected ``PUBSUB
SHARDCHANNELS``/``SHARDNUMSUB`` (cluster) or ``CHANNELS``/``NUMSUB``, and ``CLIENT LIST`` (connections in
pub/sub mode). The projection turns the measured CPU per publish per master into masters needed for a rate.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis

from benchmarks.topologies import client, command

#: the share of its one core a master may use before it counts as full (headroom for bursts, a replica's
#: full resync, a failover doubling a survivor's load)
MASTER_BUDGET = 0.7
#: rates the projection is worked out for, publishes/s
PROJECTED_RATES = (10_000, 50_000, 100_000, 500_000)
#: the quiet window before publishing, to measure each master's CPU with nothing published
IDLE_S = 1.0

Snapshot = dict[int, dict[str, float]]


def _calls(stats: dict[str, Any], command: str) -> tuple[int, int]:
    entry = stats.get(command) or {}
    return int(entry.get("calls", 0)), int(entry.get("usec", 0))


def snapshot(ports: list[int]) -> Snapshot:
    """Counters of each master: publishes (XADD), script calls and their µs, CPU seconds."""
    out: Snapshot = {}
    for port in ports:
        conn = client(port)
        stats = conn.info("commandstats")
        cpu = conn.info("cpu")
        xadd, _ = _calls(stats, "cmdstat_xadd")
        scripts, script_us = _calls(stats, "cmdstat_evalsha")
        out[port] = {
            "t": time.monotonic(),
            "xadd": xadd,
            "scripts": scripts,
            "script_us": script_us,
            "cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        }
    return out


def _pubsub(conn: redis.Redis, sharded: bool) -> tuple[int, int, int]:
    """(channels, subscriptions, pub/sub connections) on one node: Herald's; the replicas' control channels
    and the sentinels' hello channel and connections left out."""
    prefix = "PUBSUB SHARD" if sharded else "PUBSUB "
    names = [n for n in command(conn, prefix + "CHANNELS") if b":replica:" not in n and not n.startswith(b"__")]
    subscriptions = 0
    for i in range(0, len(names), 500):
        subscriptions += sum(_counts(command(conn, prefix + "NUMSUB", *names[i : i + 500])))
    field = "ssub" if sharded else "sub"
    listening = [c for c in conn.client_list() if int(c.get(field, 0)) > 0]
    connections = sum(1 for c in listening if not c.get("name", "").startswith("sentinel-"))
    return len(names), subscriptions, connections


def _counts(reply: Any) -> list[int]:
    """NUMSUB's counts, however redis-py shaped the reply: pairs, a dict, or a flat name/count list."""
    if isinstance(reply, dict):
        return [int(n) for n in reply.values()]
    if reply and isinstance(reply[0], list | tuple):
        return [int(n) for _, n in reply]
    return [int(n) for n in reply[1::2]]


def _share(start: dict[str, float], end: dict[str, float]) -> float:
    """Share of one core used between two snapshots of one master."""
    seconds = end["t"] - start["t"]
    return (end["cpu_s"] - start["cpu_s"]) / seconds if seconds > 0 else 0.0


def spread(
    quiet: tuple[tuple[Snapshot, Snapshot], ...], before: Snapshot, after: Snapshot, sharded: bool
) -> list[dict[str, Any]]:
    """One entry per master: its share of the publishes, its channels, and its CPU per publish.

    The CPU per publish is marginal: what the master burns idle is taken off the publishing window
    (``before`` -> ``after``) first. That fixed cost (serverCron, the cluster bus, Herald's probes) does not
    grow with the rate; it is reported as ``idle_cpu_share``, the lowest over the ``quiet`` windows (pairs
    of snapshots with nothing published), so one window caught in a burst of background work does not
    count.
    """
    total = sum(after[p]["xadd"] - before[p]["xadd"] for p in after) or 1
    rows = []
    for port in sorted(after):
        publishes = int(after[port]["xadd"] - before[port]["xadd"])
        scripts = after[port]["scripts"] - before[port]["scripts"]
        idle_share = min(_share(start[port], end[port]) for start, end in quiet)
        window = after[port]["t"] - before[port]["t"]
        cpu = max(0.0, after[port]["cpu_s"] - before[port]["cpu_s"] - idle_share * window)
        channels, subscriptions, connections = _pubsub(client(port), sharded)
        rows.append(
            {
                "node": f"127.0.0.1:{port}",
                "publishes": publishes,
                "share": publishes / total,
                "channels": channels,
                "subscriptions": subscriptions,
                "pubsub_connections": connections,
                "cpu_s": cpu,
                "idle_cpu_share": idle_share,
                "cpu_us_per_publish": cpu * 1e6 / publishes if publishes else None,
                "script_us_per_call": (after[port]["script_us"] - before[port]["script_us"]) / scripts
                if scripts
                else None,
            }
        )
    return rows


def spread_table(results: dict[str, dict[str, Any]], targets: list[str]) -> str:
    """Markdown: per target and workload, one row per master."""
    lines = [
        "| target | workload | master | publishes | share | channels | subscriptions | pub/sub conns "
        "| CPU µs/publish | script µs/call | idle CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for target in targets:
        for workload, metrics in results.get(target, {}).get("workloads", {}).items():
            for row in metrics.get("redis_masters") or []:
                cpu, script = row["cpu_us_per_publish"], row["script_us_per_call"]
                lines.append(
                    f"| {target} | {workload} | {row['node']} | {row['publishes']:,} | {row['share']:.0%} "
                    f"| {row['channels']:,} | {row['subscriptions']:,} | {row['pubsub_connections']} "
                    f"| {_num(cpu)} | {_num(script)} | {row['idle_cpu_share']:.1%} |"
                )
    return "\n".join(lines) if len(lines) > 2 else ""


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def cost_per_publish(metrics: dict[str, Any]) -> float | None:
    """Master CPU µs per publish over all masters of one run (busy masters weigh by their publishes)."""
    rows = metrics.get("redis_masters") or []
    publishes = sum(r["publishes"] for r in rows)
    return sum(r["cpu_s"] for r in rows) * 1e6 / publishes if publishes else None


def masters_needed(rate: float, cost_us: float, budget: float = MASTER_BUDGET) -> int:
    """Masters a publish rate needs when each publish costs ``cost_us`` of one master's single core."""
    return max(1, math.ceil(rate * cost_us / (budget * 1e6)))


def projection(results: dict[str, dict[str, Any]], targets: list[str]) -> str:
    """The arithmetic, from each target's measured W4 (many rooms: spreads) or else W1 cost."""
    lines = []
    for target in targets:
        workloads = results.get(target, {}).get("workloads", {})
        for workload in ("W4", "W1"):
            cost = cost_per_publish(workloads.get(workload, {}))
            if cost is None:
                continue
            per_master = MASTER_BUDGET * 1e6 / cost
            needs = ", ".join(f"{rate:,}/s -> {masters_needed(rate, cost)}" for rate in PROJECTED_RATES)
            lines.append(
                f"- {target} ({workload}): {cost:.1f} µs of master CPU per publish, so one master at "
                f"{MASTER_BUDGET:.0%} of its core takes {MASTER_BUDGET:.1f} s / {cost:.1f} µs = {per_master:,.0f} "
                f"publishes/s; masters needed = ceil(rate × {cost:.1f} µs / {MASTER_BUDGET:.1f} s): {needs}"
            )
            break
    return "\n".join(lines)
