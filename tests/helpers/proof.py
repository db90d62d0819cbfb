"""Figures of the SIGTERM proofs (issue 13 item 5): how bunched the reconnects to a survivor were."""

from __future__ import annotations


def peaks(times: list[float]) -> tuple[float, int]:
    """(the busiest 100 ms, scaled to per second; the most arrivals within any 1 s window)."""
    if not times:
        return 0.0, 0
    times = sorted(times)
    bins: dict[int, int] = {}
    for t in times:
        slot = int((t - times[0]) / 0.1)
        bins[slot] = bins.get(slot, 0) + 1
    busiest_window = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        busiest_window = max(busiest_window, end - start + 1)
    return max(bins.values()) / 0.1, busiest_window
