"""How late the event loop runs, and why: loop-lag samples, collector pauses, recent stalls.

A task asks to wake every millisecond and records how late it woke (the loop's lag: time it
spent on something else). The collector's own callbacks time every collection. A wake-up later
than STALL_MS is a stall; the probe keeps the last few with what it can tell of their cause:
the collector (collections that overlapped the stall), a callback that ran long (the loop's
thread used the CPU all along), or starvation (the thread barely ran: the machine was busy
with other processes).
Both distributions are Prometheus histograms (`taureau_event_loop_lag_seconds`,
`taureau_gc_pause_seconds`).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from dataclasses import dataclass

from taureau.common.histogram import Histogram

TICK_S = 0.001
STALL_MS = 5.0


@dataclass(slots=True)
class Stall:
    at: float  # wall clock when it ended
    lag_ms: float
    gc_ms: float  # collector time inside the stall
    cpu_ms: float  # CPU the loop's thread used during the stall
    generations: list[int]  # which generations it collected

    @property
    def cause(self) -> str:
        if self.gc_ms >= self.lag_ms / 2:
            return "collector"
        if self.cpu_ms >= self.lag_ms / 2:
            return "callback"
        return "starved"


class LoopProbe:
    """Start on the loop to watch; `prometheus_lines()` and `stalls` to read."""

    def __init__(self) -> None:
        self.lag = Histogram()
        self.gc_pauses = [Histogram() for _ in range(3)]  # per generation
        self.stalls: deque[Stall] = deque(maxlen=100)
        self._recent_gc: deque[tuple[float, float, int]] = deque(maxlen=64)  # (start, end, gen)
        self._gc_started: float | None = None
        self._task: asyncio.Task | None = None

    def reset(self) -> None:
        """Forget what was seen so far: start-up (imports, recovery, the collection that
        precedes gc.freeze) is not serving, and would show as the worst pauses of every run."""
        self.lag = Histogram()
        self.gc_pauses = [Histogram() for _ in range(3)]
        self.stalls.clear()
        self._recent_gc.clear()

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()

    def _on_gc(self, phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
        elif self._gc_started is not None:
            generation = int(info.get("generation", 2))
            self.gc_pauses[min(generation, 2)].observe(now - self._gc_started)
            self._recent_gc.append((self._gc_started, now, generation))
            self._gc_started = None

    async def _run(self) -> None:
        while True:
            due = time.perf_counter() + TICK_S
            cpu_before = time.thread_time()
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            late = max(now - due, 0.0)
            self.lag.observe(late)
            if late * 1000 >= STALL_MS:
                self._record_stall(due, now, late, (time.thread_time() - cpu_before) * 1000)

    def _record_stall(self, due: float, now: float, late: float, cpu_ms: float) -> None:
        overlapping = [(s, e, g) for s, e, g in self._recent_gc if e > due and s < now]
        gc_ms = sum((min(e, now) - max(s, due)) * 1000 for s, e, _ in overlapping)
        self.stalls.append(Stall(time.time(), late * 1000, gc_ms, cpu_ms, [g for _, _, g in overlapping]))

    def prometheus_lines(self) -> list[str]:
        lines = ["# TYPE taureau_event_loop_lag_seconds histogram"]
        lines += self.lag.lines("taureau_event_loop_lag_seconds")
        lines.append("# TYPE taureau_gc_pause_seconds histogram")
        for generation, histogram in enumerate(self.gc_pauses):
            lines += histogram.lines("taureau_gc_pause_seconds", f'generation="{generation}"')
        causes = {"collector": 0, "callback": 0, "starved": 0}
        for stall in self.stalls:
            causes[stall.cause] += 1
        lines.append("# TYPE taureau_event_loop_stalls gauge")
        lines += [f'taureau_event_loop_stalls{{cause="{cause}"}} {n}' for cause, n in causes.items()]
        return lines
