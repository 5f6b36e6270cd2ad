"""Windows over a function's input: count or time, tumbling or sliding, processing or event time.

Pure logic (no clock, no I/O): the instance feeds records and the current time, and gets back
the windows that fire and the records no future window needs (to acknowledge them).

Theory of operation (the semantics of Pulsar's Java window functions, which follow Storm):
- A window has a length and a sliding interval; an interval equal to the length (the default)
  makes it tumbling. Count windows count records; time windows measure milliseconds.
- Count: every `interval` records the window fires with the last `length` records.
- Processing time: windows end at multiples of the interval (on the wall clock); the window
  ending at `e` holds the records that arrived in (e - length, e] and fires once `now >= e`.
- Event time: the record's time comes from a timestamp extractor. The watermark is the largest
  event time seen minus `max_lag_ms`, advanced every `watermark_emit_interval_ms`; a window
  ending at `e` holds records with event time in (e - length, e] and fires once the watermark
  reaches `e`. A record older than the watermark is late: it goes to the late-data topic (or
  is dropped and acknowledged when there is none).
- A record leaves the buffer (and is acknowledged) once no window still to fire can hold it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from taureau.functions.config import WindowConfig

DEFAULT_WATERMARK_INTERVAL_MS = 1000


@dataclass(slots=True)
class Record:
    """One input of a window, as a window function sees it (Pulsar's Record)."""

    value: Any
    topic_name: str | None = None
    key: str | None = None
    event_time: int | None = None  # ms; the extracted time in event-time windows
    properties: dict[str, str] = field(default_factory=dict)
    message: Any = None  # the pulsar.Message, to acknowledge it
    arrival_ms: int = 0

    @property
    def message_id(self) -> Any:
        return self.message.message_id() if self.message is not None else None


@dataclass(slots=True)
class Fired:
    start_ms: int | None  # window bounds (None for count windows)
    end_ms: int | None
    records: list[Record]
    evicted: list[Record]  # records no later window holds: acknowledge after this output


class Windower:
    """Buffers records and decides which windows fire. One per instance; not thread-safe."""

    def __init__(self, config: WindowConfig) -> None:
        self.config = config
        self.count_based = config.window_length_count is not None
        if self.count_based:
            self.length = int(config.window_length_count or 0)
            self.interval = int(config.sliding_interval_count or self.length)
        else:
            self.length = int(config.window_length_duration_ms or 0)
            self.interval = int(config.sliding_interval_duration_ms or self.length)
        self.event_time = config.event_time
        self.max_lag = int(config.max_lag_ms or 0)
        self.watermark_interval = int(config.watermark_emit_interval_ms or DEFAULT_WATERMARK_INTERVAL_MS)
        self._buffer: list[Record] = []  # by arrival (count, processing time) or event time
        self._since_fire = 0  # count windows: records since the last firing
        self._next_end: int | None = None  # time windows: end of the next window to fire
        self._max_event_time: int | None = None
        self.watermark: int | None = None  # event time: the last watermark emitted
        self._next_watermark_ms: int | None = None  # wall clock of the next watermark

    # -- input ------------------------------------------------------------------------------

    def is_late(self, record: Record) -> bool:
        return self.event_time and self.watermark is not None and (record.event_time or 0) < self.watermark

    def add(self, record: Record, now_ms: int) -> list[Fired]:
        """Buffer a record that is not late; return the windows that fire now."""
        record.arrival_ms = now_ms
        if self.count_based:
            self._buffer.append(record)
            self._since_fire += 1
            if self._since_fire >= self.interval:
                return [self._fire_count()]
            return []
        if self.event_time:
            t = record.event_time or 0
            keys = [r.event_time or 0 for r in self._buffer]
            self._buffer.insert(bisect.bisect_right(keys, t), record)
            if self._max_event_time is None or t > self._max_event_time:
                self._max_event_time = t
            if self._next_watermark_ms is None:
                self._next_watermark_ms = now_ms + self.watermark_interval
            return self.tick(now_ms)
        self._buffer.append(record)
        if self._next_end is None:
            self._next_end = (now_ms // self.interval + 1) * self.interval
        return self.tick(now_ms)

    def tick(self, now_ms: int) -> list[Fired]:
        """Windows due at `now_ms` (time windows; count windows never fire on time)."""
        if self.count_based:
            return []
        if self.event_time:
            return self._tick_event_time(now_ms)
        fired = []
        while self._next_end is not None and now_ms >= self._next_end:
            fired.append(self._fire_until(self._next_end, key=lambda r: r.arrival_ms))
            self._next_end += self.interval
            if not self._buffer:
                self._next_end = None  # idle: the next record starts the clock again
        return fired

    def next_deadline_ms(self) -> int | None:
        """When `tick` may next have something to do (None: only a new record can)."""
        if self.count_based:
            return None
        if self.event_time:
            return self._next_watermark_ms if self._buffer else None
        return self._next_end

    def pending(self) -> list[Record]:
        return list(self._buffer)

    # -- firing -----------------------------------------------------------------------------

    def _fire_count(self) -> Fired:
        self._since_fire = 0
        records = self._buffer[-self.length :]
        # What stays is what the next window can still hold: the last length - interval.
        keep = max(self.length - self.interval, 0)
        cut = max(len(self._buffer) - keep, 0)
        evicted, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return Fired(None, None, records, evicted)

    def _fire_until(self, end: int, key) -> Fired:
        start = end - self.length
        records = [r for r in self._buffer if start < key(r) <= end]
        # Next window ends at end + interval and starts at end + interval - length.
        horizon = end + self.interval - self.length
        evicted = [r for r in self._buffer if key(r) <= horizon]
        self._buffer = [r for r in self._buffer if key(r) > horizon]
        return Fired(start, end, records, evicted)

    def _tick_event_time(self, now_ms: int) -> list[Fired]:
        if self._next_watermark_ms is None or now_ms < self._next_watermark_ms or self._max_event_time is None:
            return []
        self._next_watermark_ms = now_ms + self.watermark_interval
        self.watermark = self._max_event_time - self.max_lag
        fired = []
        if self._next_end is None and self._buffer:
            first = self._buffer[0].event_time or 0
            self._next_end = (first // self.interval + 1) * self.interval
        while self._next_end is not None and self.watermark >= self._next_end:
            fired.append(self._fire_until(self._next_end, key=lambda r: r.event_time or 0))
            self._next_end += self.interval
            if not self._buffer:
                self._next_end = None
        return [f for f in fired if f.records or f.evicted]
