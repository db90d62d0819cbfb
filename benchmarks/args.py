"""``herald bench`` options. Standard library only, so ``herald bench --help`` works without the bench extra."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Run the benchmark workloads against Herald, FastAPI + encode/broadcaster and a raw picows broadcaster.

Every (workload, target) run gets a fresh redis-server (when the target uses one) and fresh replicas on
loopback, and only one target runs at a time. Runs go workload by workload, round-robin over the targets,
so background load hits all of them alike; --repeat N keeps each one's median run.

Workloads:
  W1  fan-out: 1 room, --subscribers over the replicas, closed-loop publisher (--window in flight)
  W2  latency: --rate msg/s published on replica A, --subscribers on replica B
  W3  --idle idle connections to one replica: RSS per connection, connects/s
  W4  --rooms rooms x 2 members (one per replica), round-robin closed-loop publishers
  W5  W1 through GraphQL chatMessage subscriptions (graphql-transport-ws; Herald only)
  W6  --crowd idle connections on one replica: RSS per connection, time to connect all, heartbeat CPU
      (HERALD_HEARTBEAT_S=1 so a few seconds hold several rounds; Herald only)
  W7  reconnect storm: --storm clients on replica A, SIGKILLed mid-run; they resume with since on replica B:
      time until all are back, lost, duplicated, peak connects/s (Herald only)

Needs: the bench extra (pip install 'herald[bench]') and redis-server on PATH (not with --attach);
--redis cluster needs redis-cli too.

Examples:
  herald bench                                   all workloads, all targets (about 15 minutes)
  herald bench --quick --targets raw             smoke test, < 30 s
  herald bench --only W1,W3 --duration 10 --repeat 3
  herald bench --only W1,W4 --targets herald --redis standalone,sentinel,cluster
                                                 Herald on each local Redis topology, side by side
  herald bench --attach 8001,8002                replicas you started yourself (Redis behind them)
  herald bench --calibrate                       the load generator's own capacity
"""

EPILOG = """\
Output formats:
  stdout   a markdown table: one row per metric, one column per target, then the ratios
           herald/broadcaster and herald/raw (throughput: higher is better; latency, memory, CPU: lower);
           then, for Herald, how publishes and subscriptions spread over the Redis masters (one row per
           master: publishes and share, channels, subscriptions, pub/sub connections, CPU per publish)
           and the projection: masters needed for a publish rate, from the measured CPU per publish
  --out    JSON: {"created", "machine", "options", "targets": {NAME: {"replicas", "notes",
           "workloads": {W1: {metric: value, ..., "redis_masters": [...]}}}}, "ratios",
           "ratio_meaning"};
           a target or workload that failed has "error" instead of figures
  stderr   progress and warnings (e.g. a busy machine)
Exit status: 0, or 1 when any target or workload failed (the others still report).
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herald bench", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--duration", type=float, help="seconds of publishing per workload (default 5; --quick 1)")
    p.add_argument("--subscribers", type=int, help="subscribers in W1, W2, W5 (default 200; --quick 20)")
    p.add_argument("--replicas", type=int, default=2, help="replicas of herald and broadcaster (default 2)")
    p.add_argument("--herald-workers", type=int, default=1, help="HERALD_WORKERS of each herald replica (default 1)")
    p.add_argument("--idle", type=int, help="idle connections in W3 (default 2000; --quick 100)")
    p.add_argument("--rooms", type=int, help="rooms in W4, 2 members each (default 500; --quick 50)")
    p.add_argument("--crowd", type=int, help="idle connections to one replica in W6 (default 10000; --quick 300)")
    p.add_argument("--storm", type=int, help="W7 clients on the replica that is killed (default 5000; --quick 200)")
    p.add_argument("--rate", type=float, help="W2 publish rate, messages/s (default 500; --quick 200)")
    p.add_argument("--size", type=int, default=100, help="message text size in bytes (default 100)")
    p.add_argument("--window", type=int, default=4, help="W1/W5 closed-loop messages in flight (default 4)")
    p.add_argument("--room-window", type=int, default=16, help="W4 messages in flight per load process (default 16)")
    p.add_argument("--only", help="comma-separated workloads, e.g. W1,W3 (default: all)")
    p.add_argument(
        "--targets", default="herald,broadcaster,raw", help="comma-separated (default herald,broadcaster,raw)"
    )
    p.add_argument(
        "--redis",
        default="standalone",
        help="comma-separated Redis topologies for Herald, started locally: standalone, sentinel (1 master,\n"
        "1 replica, 3 sentinels), cluster (3 masters + 3 replicas); each beyond standalone is a column of\n"
        "its own (herald-sentinel, herald-cluster), with its publishes and channels per master (default standalone)",
    )
    p.add_argument("--attach", help="comma-separated ports of running Herald replicas to benchmark instead")
    p.add_argument("--workers", type=int, default=2, help="load-generator processes (default 2)")
    p.add_argument(
        "--client", choices=("picows", "websockets"), default="picows", help="load-generator client (default picows)"
    )
    p.add_argument("--repeat", type=int, default=1, help="runs of each workload; the median run is kept (default 1)")
    p.add_argument("--quick", action="store_true", help="short runs with small counts (smoke test)")
    p.add_argument("--calibrate", action="store_true", help="only measure the load generator (W1 on raw, each client)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results/latest.json"),
        help="JSON results file (default bench-results/latest.json)",
    )
    p.add_argument("--logs", type=Path, help="keep server logs in this directory (default: a deleted temp dir)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parser().parse_args(argv)
