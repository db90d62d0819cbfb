"""`herald bench` keeps working, as installed (the bench extra), from any directory: a short run against
Herald and the raw baseline, every delivery accounted for.
The figures themselves are never asserted (this machine is shared and noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.services import require


def test_a_quick_bench_run_reports_every_workload_with_nothing_lost(tmp_path: Path) -> None:
    require("redis-server", "apt-get install redis-server")
    out = tmp_path / "bench.json"
    herald = Path(sys.executable).parent / "herald"
    command = [str(herald), "bench", "--quick", "--only", "W1,W5", "--targets", "herald,raw"]
    run = subprocess.run(
        [*command, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,  # away from the checkout: the installed benchmarks package is what runs
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "W1 fan-out deliveries/s" in run.stdout
    results = json.loads(out.read_text())["targets"]
    for target, workloads in (("herald", ("W1", "W5")), ("raw", ("W1",))):
        for name in workloads:
            figures = results[target]["workloads"][name]
            assert figures["deliveries_per_s"] > 0, (target, name, figures)
            assert (figures["lost"], figures["duplicates"]) == (0, 0), (target, name, figures)


def test_a_quick_bench_on_a_local_cluster_spreads_rooms_over_its_three_masters(tmp_path: Path) -> None:
    require("redis-server", "apt-get install redis-server")
    require("redis-cli", "apt-get install redis-tools")
    out = tmp_path / "bench.json"
    herald = Path(sys.executable).parent / "herald"
    command = [str(herald), "bench", "--quick", "--only", "W4", "--targets", "herald", "--redis", "cluster"]
    run = subprocess.run(
        [*command, "--rooms", "30", "--out", str(out)], capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "herald-cluster" in run.stdout and "masters needed" in run.stdout
    figures = json.loads(out.read_text())["targets"]["herald-cluster"]["workloads"]["W4"]
    assert figures["deliveries_per_s"] > 0
    assert (figures["lost"], figures["duplicates"]) == (0, 0)
    masters = figures["redis_masters"]
    assert len(masters) == 3
    # 30 rooms over 3 masters by their hash tags: every master has some, and each of the two replicas
    # holds exactly one pub/sub connection to each.
    assert sum(m["channels"] for m in masters) == 30
    assert all(m["channels"] > 0 and m["publishes"] > 0 and m["pubsub_connections"] == 2 for m in masters)
    assert all(m["subscriptions"] == 2 * m["channels"] for m in masters)
