"""`herald bench`: W1-W5 against Herald, FastAPI + encode/broadcaster and a raw picows broadcaster.

Every (workload, target) run gets a fresh redis-server (when the target uses one) and fresh replicas on
loopback, and only one target runs at a time. Runs go workload by workload, round-robin over the targets,
so background load hits all of them alike; --repeat N keeps each one's median run. Examples::

    herald bench --quick --targets raw                  # smoke test, < 30 s
    herald bench --only W1,W3 --duration 10 --repeat 3
    herald bench --calibrate                            # the load generator's own capacity

Prints a markdown table (ratios are herald value / peer value) and writes every figure to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.args import parse_args
from benchmarks.calibrate import CLIENTS, calibrate, calibration_table
from benchmarks.coordinator import Tick, run_workload
from benchmarks.goals import evaluate, goals_table
from benchmarks.procs import ProcessGroup, raise_fd_limit
from benchmarks.report import Progress, Results, pick_median, table, write_json
from benchmarks.spread import projection, spread_table
from benchmarks.targets import HERALD_ON, TARGETS, attach, herald_available, start_target
from benchmarks.topologies import TOPOLOGIES
from benchmarks.workloads import DESCRIPTIONS, HERALD_ONLY, WORKLOADS, Options, build, target_env


def options_from(args: argparse.Namespace) -> Options:
    quick = args.quick

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else full)

    duration = pick(args.duration, 5.0, 1.0)
    return Options(
        duration=duration,
        subscribers=pick(args.subscribers, 200, 20),
        idle=pick(args.idle, 2000, 100),
        idle_rooms=10 if quick else 100,
        rooms=pick(args.rooms, 500, 50),
        rate=pick(args.rate, 500.0, 200.0),
        size=args.size,
        window=args.window,
        room_window=args.room_window,
        workers=args.workers,
        client=args.client,
        drain_timeout=2.0 if quick else max(5.0, 2 * duration),
        quiet=0.5 if quick else 1.0,
        crowd=pick(args.crowd, 10_000, 300),
        heartbeat_window=2.0 if quick else 5.0,
        storm=pick(args.storm, 5000, 200),
        storm_rooms=10 if quick else 50,
        storm_drain=30.0 if quick else 180.0,
    )


def _split(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return items


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.attach and args.redis != "standalone":
        raise SystemExit("--attach uses the replicas (and Redis) you started; --redis starts its own: pick one")
    opts = options_from(args)
    targets = _with_topologies(_split(args.targets, TARGETS, "target"), _split(args.redis, TOPOLOGIES, "topology"))
    only = _split(args.only.upper(), WORKLOADS, "workload") if args.only else list(WORKLOADS)
    order = [w for w in WORKLOADS if w in only]
    raise_fd_limit()
    signal.signal(signal.SIGTERM, _interrupt)  # a stopped bench stops what it started, as on Ctrl-C
    if args.calibrate:
        return _calibrate(args, opts)
    results: Results = {name: {"workloads": {}, "notes": []} for name in targets}
    heralds = [t for t in targets if t.startswith("herald")]
    if heralds and not args.attach and (reason := herald_available()) is not None:
        for name in heralds:
            results[name]["error"] = reason
    pairs = [
        (w, t) for w in order for t in targets if "error" not in results[t] and (t in heralds or w not in HERALD_ONLY)
    ]
    _warn_if_busy()
    progress = Progress(len(pairs) * args.repeat)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {pair: [] for pair in pairs}
    try:
        # Workload-major and round-robin over targets, so that a background load that comes and goes hits every
        # target alike and the ratios stay fair.
        for _ in range(args.repeat):
            for workload, name in pairs:
                progress.start(f"{name} {workload}")
                runs[workload, name].append(_run_guarded(name, workload, args, opts, results[name], progress.tick))
                progress.step_done()
    except KeyboardInterrupt:
        progress.finish()
        print("interrupted: every process the bench started has been stopped", file=sys.stderr)
        return 130
    progress.finish()
    for (workload, name), done in runs.items():
        results[name]["workloads"][workload] = pick_median(workload, done)
    options = asdict(opts) | {
        "herald_workers": args.herald_workers,
        "replicas": args.replicas,
        "repeat": args.repeat,
        "targets": targets,
        "workloads": order,
    }
    goals = evaluate(results)
    write_json(args.out, results, options, load_average=os.getloadavg(), goals=goals)
    print(table(results, targets))
    if spreads := spread_table(results, targets):
        print("\nRedis masters (publishes and subscriptions per master, master CPU per publish):\n")
        print(spreads)
        print("\nProjection (marginal master CPU per publish, measured above; the idle share left out):\n")
        print(projection(results, targets))
    print("\nTargets (issue 14; ratios are herald / peer in this run):\n")
    print(goals_table(goals))
    _print_notes(results)
    print(f"\nJSON: {args.out}", file=sys.stderr)
    failed = any("error" in r or any("error" in m for m in r["workloads"].values()) for r in results.values())
    return 1 if failed else 0


def _with_topologies(targets: list[str], topologies: list[str]) -> list[str]:
    """``herald`` becomes one target per ``--redis`` topology: ``herald`` (standalone), ``herald-cluster``..."""
    if "herald" not in targets:
        return targets
    heralds = ["herald" if kind == "standalone" else HERALD_ON[kind] for kind in topologies]
    i = targets.index("herald")
    return [*targets[:i], *heralds, *targets[i + 1 :]]


def _warn_if_busy() -> None:
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cpus:
        print(f"warning: load average {load:.1f} on {cpus} CPUs before the bench: figures will be low", file=sys.stderr)


def _print_notes(results: Results) -> None:
    for name, entry in results.items():
        if "error" in entry:
            print(f"- {name} did not run: {entry['error']}")
        for note in entry["notes"]:
            print(f"- {name}: {note}")
        for workload, metrics in entry["workloads"].items():
            if "error" in metrics:
                print(f"- {name} {workload} failed: {metrics['error']}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _calibrate(args: argparse.Namespace, opts: Options) -> int:
    progress = Progress(len(CLIENTS))
    try:
        results = calibrate(opts, progress)
    except KeyboardInterrupt:
        progress.finish()
        return 130
    progress.finish()
    write_json(args.out, {}, asdict(opts), calibration=results)
    print(calibration_table(results))
    print(f"\nJSON: {args.out}", file=sys.stderr)
    return 0


def _run_guarded(
    name: str, workload: str, args: argparse.Namespace, opts: Options, entry: dict[str, Any], tick: Tick
) -> dict[str, Any]:
    try:
        return _run_one(name, workload, args, opts, entry, tick)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one failed workload must not cost the others their figures
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _run_one(
    name: str, workload: str, args: argparse.Namespace, opts: Options, entry: dict[str, Any], tick: Tick
) -> dict[str, Any]:
    """One workload on freshly started replicas (and a fresh Redis), so no workload inherits another's heap,
    history or subscriptions."""
    with contextlib.ExitStack() as stack:
        if args.logs is not None:
            logdir = args.logs / f"{name}-{workload}"
            logdir.mkdir(parents=True, exist_ok=True)
        else:
            logdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-{name}-")))
        group = stack.enter_context(ProcessGroup(logdir))
        tick("starting servers")
        if name == "herald" and args.attach:
            running = attach(name, [int(p) for p in args.attach.split(",")])
        else:
            env = target_env(workload, opts) | {"HERALD_WORKERS": str(args.herald_workers)}
            running = start_target(name, args.replicas, group, env)
        entry["replicas"] = len(running.ports)
        entry["notes"] = sorted(set(entry["notes"]) | set(running.notes))
        metrics = run_workload(build(workload, opts, running.ports), running, tick)
        for proc in group.procs:
            if proc.popen.poll() is not None:
                exited = f"{proc.name} exited {proc.popen.returncode}: {proc.log_tail(5)}"
                metrics.setdefault("exited", []).append(exited)
        metrics["description"] = DESCRIPTIONS[workload]
        return metrics


if __name__ == "__main__":
    sys.exit(main())
