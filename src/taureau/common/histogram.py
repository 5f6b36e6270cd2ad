"""A Prometheus histogram of durations, kept as counts per bucket: O(1) memory, one writer.

Each histogram has one writer (the loop, or one thread); readers on another thread may see a
count a moment late, which a scrape tolerates.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# 0.5 ms to 1 s: what a loop stall, a collector pause or an fsync takes.
BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...] = BUCKETS_S
    counts: list[int] = field(init=False)  # one per bound, and one above the last
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        out.append(f"{name}_sum{{{labels}}} {self.total}")
        out.append(f"{name}_count{{{labels}}} {self.n}")
        return out
