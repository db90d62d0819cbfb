"""Issue 14's targets, each with the figure and ratio measured in this run, and whether it was met.

Ratios are Herald's figure over the peer's from the same run (the machine is shared, so only same-run
ratios mean anything). A target whose figures are missing (a workload or target not run, or failed) says
"n/a" rather than pass or fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.redis_stats import publish_scripts

Results = dict[str, dict[str, Any]]
Figure = Callable[[dict[str, Any]], float | None]


@dataclass(frozen=True)
class Goal:
    label: str
    workload: str
    figure: Figure
    #: the peer the figure is compared with (None: an absolute bound on Herald's own figure)
    peer: str | None
    bound: float
    #: True: the ratio (or figure) must be at least ``bound``; False: at most
    at_least: bool
    unit: str = "×"


def _get(*path: str) -> Figure:
    def figure(m: dict[str, Any]) -> float | None:
        value: Any = m
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return float(value) if isinstance(value, (int, float)) else None

    return figure


def _backlog_per_subscriber(m: dict[str, Any]) -> float | None:
    """W2's backlog at the end of the window, in messages per subscriber (what was still in flight)."""
    subscribers = m.get("subscribers") or 0
    backlog = m.get("backlog_at_end")
    return backlog / subscribers if subscribers and backlog is not None else None


GOALS = [
    Goal("W4 deliveries/s vs broadcaster", "W4", _get("deliveries_per_s"), "broadcaster", 3.0, True),
    Goal("W4 deliveries/s vs raw", "W4", _get("deliveries_per_s"), "raw", 0.6, True),
    Goal("W4 server CPU per publish vs raw", "W4", _get("server_cpu_us_per_publish"), "raw", 3.0, False),
    Goal("W1 deliveries/s vs broadcaster", "W1", _get("deliveries_per_s"), "broadcaster", 2.5, True),
    Goal("W1 deliveries/s vs raw", "W1", _get("deliveries_per_s"), "raw", 0.8, True),
    Goal("W3 connects/s vs raw", "W3", _get("connects_per_s"), "raw", 0.8, True),
    Goal("W3 idle memory KB/connection", "W3", _get("rss_per_conn_kb"), None, 24.0, False, " KB"),
    Goal("W2 latency p99 ms", "W2", _get("latency_ms", "p99"), None, 10.0, False, " ms"),
    Goal("W2 lost deliveries", "W2", _get("lost"), None, 0, False, ""),
    Goal("W2 backlog at end, messages per subscriber", "W2", _backlog_per_subscriber, None, 1.0, False, ""),
    # (a publish the load generator sent just before its window closed can land inside Redis' count: ± 1%)
    Goal("W4 publish-script calls per publish", "W4", lambda m: _scripts(m), None, 1.01, False, ""),
    Goal("W6 idle memory KB/connection at 10k", "W6", _get("rss_per_conn_kb"), None, 24.0, False, " KB"),
    Goal("W7 lost after SIGKILL", "W7", _get("lost"), None, 0, False, ""),
    Goal("W7 duplicated after SIGKILL", "W7", _get("duplicates"), None, 0, False, ""),
    Goal("W4 pub/sub connections per replica (per master)", "W4", lambda m: _per_replica(m), None, 1.0, False, ""),
]


def _scripts(m: dict[str, Any]) -> float | None:
    commands, published = m.get("redis_commands"), m.get("published")
    return publish_scripts(commands) / published if commands and published else None


def _per_replica(m: dict[str, Any]) -> float | None:
    # per master too: on a cluster a replica holds one per master that owns one of its channels
    connections, replicas = m.get("redis_pubsub_connections"), m.get("replicas")
    masters = m.get("redis_masters_count") or 1
    return connections / (replicas * masters) if connections is not None and replicas else None


def _workload(results: Results, target: str, workload: str) -> dict[str, Any] | None:
    metrics = results.get(target, {}).get("workloads", {}).get(workload)
    return None if metrics is None or "error" in metrics else metrics


def evaluate(results: Results) -> list[dict[str, Any]]:
    """One row per goal: herald's figure, the peer's, the ratio (or Herald's own figure) and ``met``."""
    rows = []
    for goal in GOALS:
        row: dict[str, Any] = {"target": goal.label, "herald": None, "peer": None, "measured": None, "met": None}
        mine = _workload(results, "herald", goal.workload)
        value = goal.figure(mine) if mine is not None else None
        row["herald"] = value
        if goal.peer is not None:
            theirs = _workload(results, goal.peer, goal.workload)
            other = goal.figure(theirs) if theirs is not None else None
            row["peer"] = other
            measured = value / other if value is not None and other else None
        else:
            measured = value
        row["measured"] = measured
        if measured is not None:
            row["met"] = measured >= goal.bound if goal.at_least else measured <= goal.bound
        row["goal"] = f"{'≥' if goal.at_least else '≤'} {goal.bound:g}{goal.unit}"
        row["unit"] = goal.unit
        rows.append(row)
    return rows


def goals_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | herald | peer | measured | goal | met |", "|---|---|---|---|---|---|"]
    for row in rows:
        measured = "n/a" if row["measured"] is None else f"{row['measured']:,.2f}{row['unit']}"
        met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        lines.append(
            f"| {row['target']} | {_num(row['herald'])} | {_num(row['peer'])} | {measured} | {row['goal']} | {met} |"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
