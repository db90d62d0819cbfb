"""The load generator's own capacity: W1 against the raw broadcaster with each client library.

The CPU the load-generator processes spend per received message says how many deliveries one core of
load generation can absorb; the faster library is the bench's default client (``--client``).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.coordinator import run_workload
from benchmarks.procs import ProcessGroup
from benchmarks.report import Progress
from benchmarks.targets import start_target
from benchmarks.workloads import Options, build

CLIENTS = ("picows", "websockets")


def calibrate(opts: Options, progress: Progress) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for client in CLIENTS:
        progress.start(f"calibrate {client}")
        with tempfile.TemporaryDirectory(prefix="bench-calibrate-") as logdir, ProcessGroup(Path(logdir)) as group:
            running = start_target("raw", 1, group)
            m = run_workload(build("W1", replace(opts, client=client), running.ports), running, progress.tick)
        progress.step_done()
        us = m["loadgen_cpu_us_per_delivery"]
        results[client] = {
            "deliveries_per_s": m["deliveries_per_s"],
            "lost": m["lost"],
            "duplicates": m["duplicates"],
            "loadgen_cpu_s": m["loadgen_cpu_s"],
            "loadgen_cpu_us_per_delivery": us,
            "deliveries_per_loadgen_core": 1e6 / us if us else None,
            "server_cpu_s": m["server_cpu_s"],
        }
    return results


def calibration_table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| client | W1 raw deliveries/s | load generator CPU µs/delivery | deliveries/s per load-generator core |",
        "|---|---|---|---|",
    ]
    for client, r in results.items():
        per_core = r["deliveries_per_loadgen_core"]
        lines.append(
            f"| {client} | {r['deliveries_per_s']:,.0f} | {r['loadgen_cpu_us_per_delivery'] or 0:.2f} "
            f"| {per_core:,.0f} |"
            if per_core
            else f"| {client} | {r['deliveries_per_s']:,.0f} | n/a | n/a |"
        )
    return "\n".join(lines)
