"""How late the event loop runs, and why: loop-lag samples, collector pauses, recent stalls.

A timer asks to fire every millisecond and records how late it fired (the loop's lag: time it
spent on something else). While the loop is idle (its thread used under QUIET_CPU_SHARE of the
wall time over a QUIET_AFTER_S window) the timer fires every IDLE_TICK_S instead, and goes back
to every millisecond after a window that was busier: an idle process woken 1,000 times a second
paid 5-8% of a core for the wake-ups alone on a 2-core VM, and an idle loop has no lag to
measure. A stall while idle still shows if it spans a tick (any over IDLE_TICK_S does); a
shorter one is missed.

The collector's own callbacks time every collection. A wake-up later than STALL_MS is a stall;
the probe keeps the last few with what it can tell of their cause: the collector (collections
that overlapped the stall), a callback that ran long (the loop's thread used the CPU all
along), or starvation (the thread barely ran: the machine was busy with other processes).
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
IDLE_TICK_S = 0.025
# Idle: the loop's thread used at most this share of the wall time (a wake-up alone costs 50-80
# us of a 1 ms tick on a VM, so it must be well above 8%)...
QUIET_CPU_SHARE = 0.2
# ...over a window this long (then the probe slows down to IDLE_TICK_S; a busier window brings
# the 1 ms tick back).
QUIET_AFTER_S = 0.1
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tick = TICK_S  # the current period: TICK_S, or IDLE_TICK_S while the loop is idle
        self._due = 0.0  # perf_counter time the pending tick is due
        self._cpu_at = 0.0  # the loop thread's CPU time when it was scheduled
        self._window = (0.0, 0.0)  # (perf_counter, thread CPU) at the start of the current window

    def reset(self) -> None:
        """Forget what was seen so far: start-up (imports, recovery, the collection that
        precedes gc.freeze) is not serving, and would show as the worst pauses of every run."""
        self.lag = Histogram()
        self.gc_pauses = [Histogram() for _ in range(3)]
        self.stalls.clear()
        self._recent_gc.clear()

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._loop = asyncio.get_running_loop()
        now, cpu_now = time.perf_counter(), time.thread_time()
        self._window = (now, cpu_now)
        self._schedule(TICK_S, now, cpu_now)

    def _schedule(self, tick: float, now: float, cpu_now: float) -> None:
        # A plain timer callback, not a task sleeping: no future, task step or loop lookup
        # per tick (the probe runs up to 1,000 times a second on a busy loop).
        self._tick = tick
        self._due = now + tick
        self._cpu_at = cpu_now
        assert self._loop is not None
        self._timer = self._loop.call_later(tick, self._fire)

    def _fire(self) -> None:
        now = time.perf_counter()
        cpu_now = time.thread_time()
        due, tick = self._due, self._tick
        late = max(now - due, 0.0)
        self.lag.observe(late)
        if late * 1000 >= STALL_MS:
            self._record_stall(due, now, late, (cpu_now - self._cpu_at) * 1000)
        self._schedule(self._next_tick(tick, now, cpu_now), now, cpu_now)

    def _next_tick(self, tick: float, now: float, cpu_now: float) -> float:
        """The period from the thread's CPU share over whole QUIET_AFTER_S windows, in both
        directions: one slow wake-up of a busy machine does not keep the probe at 1 ms, and
        the broker's once-a-second passes over 1,000 topics (5 ms at once) do not bring it
        back to 1 ms for a window every second (they did, when one busy 25 ms tick did)."""
        window_start, window_cpu = self._window
        if now - window_start < QUIET_AFTER_S:
            return tick
        self._window = (now, cpu_now)
        quiet = cpu_now - window_cpu <= QUIET_CPU_SHARE * (now - window_start)
        return IDLE_TICK_S if quiet else TICK_S

    @property
    def idle(self) -> bool:
        """Ticking slowly: the loop has been idle for a while."""
        return self._tick == IDLE_TICK_S

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_gc(self, phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
        elif self._gc_started is not None:
            generation = int(info.get("generation", 2))
            self.gc_pauses[min(generation, 2)].observe(now - self._gc_started)
            self._recent_gc.append((self._gc_started, now, generation))
            self._gc_started = None

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
