"""What the bench shows: a progress bar on stderr, a markdown table on stdout, a JSON file."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

Results = dict[str, dict[str, Any]]  # target -> {"workloads": {W: metrics or {"error": ...}}, ...}


class Progress:
    """A one-line text bar, redrawn in place on a terminal and printed once per step otherwise."""

    def __init__(self, steps: int, stream: TextIO = sys.stderr, width: int = 24) -> None:
        self.steps = max(1, steps)
        self.done = 0
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.label = ""
        self.started = time.monotonic()

    def start(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        if self.tty:
            self._draw("starting")
        else:
            print(f"[{self.done + 1}/{self.steps}] {label}", file=self.stream, flush=True)

    def tick(self, phase: str) -> None:
        if self.tty:
            self._draw(f"{phase} {time.monotonic() - self.started:4.1f}s")

    def step_done(self) -> None:
        self.done += 1
        if self.tty:
            self._draw("done")

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, phase: str) -> None:
        filled = self.width * self.done // self.steps
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {self.done}/{self.steps} {self.label}: {phase}"
        columns = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + line[:columns].ljust(columns))
        self.stream.flush()


@dataclass
class Row:
    label: str
    workload: str
    value: Callable[[dict[str, Any]], float | str | None]
    fmt: str = "{:,.0f}"
    ratio: bool = True


def _loss(m: dict[str, Any]) -> str:
    return f"{m['lost']} / {m['duplicates']}"


def _redis_cpu(m: dict[str, Any]) -> float | None:
    return m["redis_cpu_s"] * 1e6 / m["published"] if m.get("published") else None


def _lat(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda m: m["latency_ms"][key]


ROWS = [
    Row("W1 fan-out deliveries/s", "W1", lambda m: m["deliveries_per_s"]),
    Row("W1 lost / duplicates", "W1", _loss, ratio=False),
    Row("W1 server CPU µs/delivery", "W1", lambda m: m["server_cpu_us_per_delivery"], "{:.2f}"),
    Row("W1 load generator CPU µs/delivery", "W1", lambda m: m["loadgen_cpu_us_per_delivery"], "{:.2f}", False),
    Row("W1 Redis CPU µs/publish (every data node)", "W1", _redis_cpu, "{:.1f}", False),
    Row("W2 delivered/s (offered: rate × subscribers)", "W2", lambda m: m["deliveries_per_s"]),
    Row("W2 latency p50 ms", "W2", _lat("p50"), "{:.2f}"),
    Row("W2 latency p99 ms", "W2", _lat("p99"), "{:.2f}"),
    Row("W2 latency max ms", "W2", _lat("max"), "{:.2f}"),
    Row("W2 backlog at end (deliveries)", "W2", lambda m: m["backlog_at_end"], ratio=False),
    Row("W2 lost / duplicates", "W2", _loss, ratio=False),
    Row("W3 idle RSS KB/connection", "W3", lambda m: m["rss_per_conn_kb"], "{:.1f}"),
    Row("W3 connects/s", "W3", lambda m: m["connects_per_s"]),
    Row("W3 failed connects", "W3", lambda m: m["connect_failures"], ratio=False),
    Row("W4 rooms deliveries/s", "W4", lambda m: m["deliveries_per_s"]),
    Row("W4 lost / duplicates", "W4", _loss, ratio=False),
    Row("W4 server CPU µs/delivery", "W4", lambda m: m["server_cpu_us_per_delivery"], "{:.2f}"),
    Row("W4 Redis CPU µs/publish (every data node)", "W4", _redis_cpu, "{:.1f}", False),
    Row("W5 GraphQL deliveries/s", "W5", lambda m: m["deliveries_per_s"]),
    Row("W5 lost / duplicates", "W5", _loss, ratio=False),
    Row("W5 server CPU µs/delivery", "W5", lambda m: m["server_cpu_us_per_delivery"], "{:.2f}"),
    Row("W6 idle connections on one replica", "W6", lambda m: m["connections"], ratio=False),
    Row("W6 idle RSS KB/connection", "W6", lambda m: m["rss_per_conn_kb"], "{:.1f}", False),
    Row("W6 seconds to connect all", "W6", lambda m: m["connect_s"], "{:.1f}", False),
    Row("W6 connects/s", "W6", lambda m: m["connects_per_s"], ratio=False),
    Row(
        "W6 heartbeat CPU µs per connection per beat",
        "W6",
        lambda m: m["heartbeat_cpu_us_per_connection"],
        "{:.1f}",
        False,
    ),
    Row("W6 heartbeat CPU at 30 s, % of a core", "W6", lambda m: 100 * m["idle_cpu_share_at_30s"], "{:.2f}", False),
    Row(
        "W7 clients resumed / on the killed replica",
        "W7",
        lambda m: f"{m['storm_resumed']} / {m['storm_clients']}",
        ratio=False,
    ),
    Row("W7 seconds until all back", "W7", lambda m: m["storm_last_back_s"], "{:.2f}", False),
    Row("W7 peak connects/s", "W7", lambda m: m["storm_peak_connects_per_s"], ratio=False),
    Row("W7 lost / duplicates", "W7", _loss, ratio=False),
]
PEERS = ("broadcaster", "raw")


HEADLINE: dict[str, tuple[Callable[[dict[str, Any]], float | None], str]] = {
    "W1": (lambda m: m["deliveries_per_s"], "deliveries_per_s"),
    "W2": (lambda m: m["latency_ms"]["p99"], "latency_ms.p99"),
    "W3": (lambda m: m["rss_per_conn_kb"], "rss_per_conn_kb"),
    "W4": (lambda m: m["deliveries_per_s"], "deliveries_per_s"),
    "W5": (lambda m: m["deliveries_per_s"], "deliveries_per_s"),
    "W6": (lambda m: m["rss_per_conn_kb"], "rss_per_conn_kb"),
    "W7": (lambda m: m["storm_last_back_s"], "storm_last_back_s"),
}


def pick_median(workload: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose headline figure is the median of the runs (failed runs only if all failed)."""
    value, name = HEADLINE[workload]
    good = [r for r in runs if "error" not in r and value(r) is not None]
    if not good:
        return runs[-1]
    good.sort(key=lambda r: value(r) or 0.0)
    chosen = dict(good[(len(good) - 1) // 2])
    if len(runs) > 1:
        chosen["repeats"] = {"headline": name, "values": [value(r) if r in good else None for r in runs]}
    return chosen


def _cell(results: Results, target: str, row: Row) -> tuple[str, float | None]:
    metrics = results.get(target, {}).get("workloads", {}).get(row.workload)
    if metrics is None:
        return "n/a", None
    if "error" in metrics:
        return "error", None
    try:
        value = row.value(metrics)
    except (KeyError, TypeError):
        return "n/a", None
    if value is None:
        return "n/a", None
    if isinstance(value, str):
        return value, None
    return row.fmt.format(value), float(value)


def ratios(results: Results) -> dict[str, dict[str, float]]:
    """herald value / peer value for every numeric row both ran."""
    out: dict[str, dict[str, float]] = {}
    for peer in PEERS:
        pairs = {}
        for row in ROWS:
            _, mine = _cell(results, "herald", row)
            _, theirs = _cell(results, peer, row)
            if row.ratio and mine is not None and theirs:
                pairs[row.label] = round(mine / theirs, 3)
        if pairs:
            out[f"herald/{peer}"] = pairs
    return out


def table(results: Results, targets: list[str]) -> str:
    ratio_cols = [peer for peer in PEERS if "herald" in targets and peer in targets]
    header = ["metric", *targets, *(f"herald/{p}" for p in ratio_cols)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ran = {w for t in targets for w in results.get(t, {}).get("workloads", {})}
    all_ratios = ratios(results)
    for row in ROWS:
        if row.workload not in ran:
            continue
        cells = [_cell(results, t, row)[0] for t in targets]
        for peer in ratio_cols:
            r = all_ratios.get(f"herald/{peer}", {}).get(row.label)
            cells.append(f"{r:.2f}×" if r is not None else "")
        lines.append("| " + " | ".join([row.label, *cells]) + " |")
    return "\n".join(lines)


def write_json(path: Path, results: Results, options: dict[str, Any], **extra: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "options": options,
        "targets": results,
        "ratios": ratios(results),
        "ratio_meaning": "herald value / peer value (throughput: higher is better; latency, memory, CPU: lower)",
        **extra,
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
