"""Windower: table-driven checks of count, processing-time and event-time windows."""

from __future__ import annotations

from taureau.functions.config import WindowConfig
from taureau.functions.windows import Record, Windower


def values(fired):
    return [r.value for r in fired.records]


def evicted(fired):
    return [r.value for r in fired.evicted]


def test_tumbling_count_window():
    w = Windower(WindowConfig(window_length_count=3))
    out = [w.add(Record(i), now_ms=i) for i in range(7)]
    fired = [f for batch in out for f in batch]
    assert [values(f) for f in fired] == [[0, 1, 2], [3, 4, 5]]
    assert [evicted(f) for f in fired] == [[0, 1, 2], [3, 4, 5]]
    assert [r.value for r in w.pending()] == [6]


def test_sliding_count_window():
    w = Windower(WindowConfig(window_length_count=4, sliding_interval_count=2))
    fired = [f for i in range(8) for f in w.add(Record(i), now_ms=i)]
    assert [values(f) for f in fired] == [[0, 1], [0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    # Each record is acknowledged once no later window holds it, and only once.
    assert [evicted(f) for f in fired] == [[], [0, 1], [2, 3], [4, 5]]


def test_tumbling_processing_time_window():
    w = Windower(WindowConfig(window_length_duration_ms=100))
    assert w.add(Record("a"), now_ms=1010) == []
    assert w.add(Record("b"), now_ms=1050) == []
    assert w.next_deadline_ms() == 1100
    assert w.tick(1099) == []
    fired = w.tick(1100)
    assert [values(f) for f in fired] == [["a", "b"]] and fired[0].start_ms == 1000 and fired[0].end_ms == 1100
    assert w.add(Record("c"), now_ms=1180) == []
    assert [values(f) for f in w.tick(1200)] == [["c"]]
    assert w.next_deadline_ms() is None  # idle: nothing buffered, no timer


def test_sliding_processing_time_window():
    w = Windower(WindowConfig(window_length_duration_ms=200, sliding_interval_duration_ms=100))
    w.add(Record("a"), now_ms=1050)
    first = w.tick(1100)
    assert [values(f) for f in first] == [["a"]] and evicted(first[0]) == []
    assert w.add(Record("b"), now_ms=1150) == []
    second = w.tick(1200)
    assert [values(f) for f in second] == [["a", "b"]] and evicted(second[0]) == ["a"]
    third = w.tick(1300)
    assert [values(f) for f in third] == [["b"]] and evicted(third[0]) == ["b"]


def test_event_time_windows_with_watermark_and_late_data():
    w = Windower(WindowConfig(window_length_duration_ms=100, max_lag_ms=50, watermark_emit_interval_ms=10,
                              timestamp_extractor_class_name="x.Extractor"))
    assert w.add(Record("a", event_time=1010), now_ms=0) == []
    assert w.add(Record("c", event_time=1090), now_ms=1) == []
    assert w.add(Record("b", event_time=1020), now_ms=2) == []  # out of order is fine
    assert w.tick(10) == []  # watermark 1040: the window ending at 1100 is still open
    assert w.add(Record("d", event_time=1160), now_ms=11) == []
    fired = w.tick(20)  # watermark 1110 passes 1100
    assert [values(f) for f in fired] == [["a", "b", "c"]]
    assert fired[0].start_ms == 1000 and fired[0].end_ms == 1100
    late = Record("late", event_time=1050)
    assert w.is_late(late)  # older than the watermark: its window has fired
    assert not w.is_late(Record("ok", event_time=1150))
    w.add(Record("e", event_time=1300), now_ms=21)
    fired = w.tick(30)  # watermark 1250: the window ending at 1200 fires with d
    assert [values(f) for f in fired] == [["d"]]


def test_event_time_windows_fire_in_order_without_empty_windows():
    w = Windower(WindowConfig(window_length_duration_ms=100, watermark_emit_interval_ms=1,
                              timestamp_extractor_class_name="x.Extractor"))
    w.add(Record("a", event_time=1010), now_ms=0)
    fired = w.add(Record("z", event_time=1510), now_ms=1)  # the watermark jumps to 1510
    assert [values(f) for f in fired] == [["a"]]  # the empty windows between are skipped
    assert [r.value for r in w.pending()] == ["z"]
