"""W7, the reconnect storm: replica A is SIGKILLed mid-run and every client it held resumes on replica B with
``since``. The load generator counts loss and duplicates per publisher sequence as in every workload; this
kills the replica on time and turns the resumed clients' welcome times into the storm's figures."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from benchmarks.targets import Running


class _Killer(threading.Thread):
    """SIGKILLs ``pid`` at ``at_ns`` (monotonic), and remembers when it did."""

    def __init__(self, pid: int, at_ns: int) -> None:
        super().__init__(name="bench-w7-killer", daemon=True)
        self.pid = pid
        self.at_ns = at_ns

    def run(self) -> None:
        time.sleep(max(0.0, (self.at_ns - time.monotonic_ns()) / 1e9))
        self.at_ns = time.monotonic_ns()
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_later(target: Running, t_start_ns: int, after_s: float) -> _Killer:
    if not target.server_pids:
        raise RuntimeError("W7 needs the replicas' PIDs (it cannot run with --attach)")
    killer = _Killer(target.server_pids[0], t_start_ns + int(after_s * 1e9))
    killer.start()
    return killer


def storm_figures(killed_ns: int, stats: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """Time until every client was back, peak connects/s (per 100 ms, scaled), and how the resumes went."""
    resumed = sorted(ns for s in stats for ns in s["resumed_ns"])
    back_s = (resumed[-1] - killed_ns) / 1e9 if resumed else None
    peak = 0
    if resumed:
        buckets: dict[int, int] = {}
        for ns in resumed:
            bucket = (ns - killed_ns) // 100_000_000
            buckets[bucket] = buckets.get(bucket, 0) + 1
        peak = max(buckets.values()) * 10
    return {
        "storm_clients": clients,
        "storm_resumed": len(resumed),
        "storm_all_back_s": back_s if len(resumed) >= clients else None,
        "storm_last_back_s": back_s,
        "storm_peak_connects_per_s": peak,
        "storm_resumed_with_gap": sum(int(s["resumed_gaps"]) for s in stats),
        "storm_failed_attempts": sum(int(s["resume_failures"]) for s in stats),
        "storm_gave_up": sum(int(s["resume_gave_up"]) for s in stats),
    }
