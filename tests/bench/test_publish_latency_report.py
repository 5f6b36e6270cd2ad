"""The publish-latency probe's report helpers (the probe itself is a benchmark, not a test)."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # as when the script runs: its `peers` package is beside it
spec = importlib.util.spec_from_file_location("publish_latency", BENCH / "publish_latency.py")
assert spec is not None and spec.loader is not None
publish_latency = importlib.util.module_from_spec(spec)
spec.loader.exec_module(publish_latency)


def test_worst_takes_the_slowest_receipt_of_each_of_the_worst_windows():
    latencies = [1.0, 9.0, 8.0, 2.0, 30.0, 3.0]
    sent = [0.01, 0.02, 0.03, 0.51, 0.55, 1.25]  # windows 0, 0, 0, 5, 5, 12
    assert publish_latency.worst(latencies, sent, n=2) == "30.0 ms at 0.6 s, 9.0 ms at 0.0 s"
    assert publish_latency.worst(latencies, sent, n=5) == "30.0 ms at 0.6 s, 9.0 ms at 0.0 s, 3.0 ms at 1.2 s"


def test_percentile_is_the_nearest_rank_at_or_above():
    values = [float(v) for v in range(1, 101)]
    assert publish_latency.percentile(values, 50) == 51.0
    assert publish_latency.percentile(values, 99) == 100.0
    assert publish_latency.percentile(values, 99.9) == 100.0
