"""Figures of the SIGTERM proofs (issue 13 item 5): how bunched the reconnects to a survivor were."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass
class Figures:
    clients: int
    numbers: int
    lost: int
    duplicated: int
    out_of_order: int
    reconnects: int
    peak_per_s_100ms: float
    peak_per_s_1s: int
    spread_s: float

    def describe(self) -> str:
        return (
            f"{self.clients} clients, {self.numbers} numbers, lost {self.lost}, duplicated {self.duplicated},"
            f" out of order {self.out_of_order}; {self.reconnects} reconnects to the survivor over {self.spread_s} s,"
            f" peak {self.peak_per_s_100ms:.0f}/s (busiest 100 ms), {self.peak_per_s_1s} in the busiest second"
        )


def figures(received: list[list[int]], numbers: int, reconnects: list[float]) -> Figures:
    """What each client received of the stream 1..``numbers``, and when the reconnects arrived."""
    expected = set(range(1, numbers + 1))
    per_100ms, per_1s = peaks(reconnects)
    return Figures(
        clients=len(received),
        numbers=numbers,
        lost=sum(len(expected - set(got)) for got in received),
        duplicated=sum(len(got) - len(set(got)) for got in received),
        out_of_order=sum(got != sorted(got) for got in received),
        reconnects=len(reconnects),
        peak_per_s_100ms=per_100ms,
        peak_per_s_1s=per_1s,
        spread_s=round(max(reconnects) - min(reconnects), 2) if reconnects else 0.0,
    )
