"""The pure helpers behind bench/messaging.py's latency cells: send stamps, topic names, the
percentiles of a cell (all its workers' latencies together) and an e2e-latency consumer's tally.
The benchmark itself is not a test and is never collected."""

import math
import threading

from bench.peers.base import WARMUP_MESSAGES, latency_ms, sent_ns, stamped, topic_names
from bench.peers.runner import Job, Link, Receipts, WorkerResult, summarize


def test_a_stamp_replaces_the_first_eight_bytes_and_reads_back():
    data = stamped(b"x" * 100, 1_234_567_890_123)
    assert len(data) == 100
    assert data[:8] == (1_234_567_890_123).to_bytes(8, "little")
    assert data[8:] == b"x" * 92
    assert sent_ns(data) == 1_234_567_890_123


def test_topic_names_are_the_pair_name_alone_or_one_suffix_a_topic():
    assert topic_names("bench-3-0", 1) == ["bench-3-0"]
    assert topic_names("bench-3-0", 3) == ["bench-3-0-0", "bench-3-0-1", "bench-3-0-2"]
    assert topic_names("s", 2, sep=".") == ["s.0", "s.1"]


def test_latency_ms_takes_p50_p99_p999_and_max_of_all_values_in_any_order():
    # k/1024 s is k * 125/128 ms: exact in binary floating point
    values = [k / 1024 for k in range(1000, 0, -1)]
    assert latency_ms(values) == (501 * 125 / 128, 990 * 125 / 128, 999 * 125 / 128, 1000 * 125 / 128)


def test_latency_ms_of_nothing_is_nan():
    assert all(math.isnan(v) for v in latency_ms([]))


def test_an_e2e_latency_cell_counts_its_consumers_over_all_workers_and_what_they_lost():
    # producers sent 3 + 2; consumers received 2 + 2 in 0.5 s (the later of their last receipts)
    sent = [WorkerResult(3, 3.0, 0.125), WorkerResult(2, 3.0, 0.125)]
    received = [WorkerResult(2, 0.4, 0.25, [0.001, 0.004]), WorkerResult(2, 0.5, 0.25, [0.002, 0.003])]
    by_role = {"latency": sent, "receive": received}
    cell = summarize("taureau", "e2e-latency", True, 2, by_role, (1.0, 0.25, 1.5))
    assert (cell.rate, cell.lost, cell.topics) == (8.0, 1, 0)
    assert (cell.p50_ms, cell.p99_ms, cell.p999_ms, cell.max_ms) == (3.0, 4.0, 4.0, 4.0)
    assert (cell.server_cpu, cell.client_cpu, cell.other_cpu) == (25.0, 75.0, 50.0)


def test_a_publish_latency_cell_counts_its_producers():
    results = [WorkerResult(2, 2.0, 0.0, [0.002, 0.001])]
    cell = summarize("redis", "latency", False, 1, {"latency": results}, (1.0, 0.0, 0.0), topics=2)
    # p50 of two values: the lower (index round(0.5) = 0)
    assert (cell.rate, cell.lost, cell.topics, cell.p50_ms, cell.max_ms) == (1.0, 0, 2, 1.0, 2.0)


def test_receipts_take_the_warmup_before_the_barrier_then_stop_at_what_the_producer_sent():
    link = Link()
    tally = Receipts(Job("taureau", "receive", "", "s", True, 1.0, link=link), threading.Barrier(1))
    tally.ready()
    assert link.subscribed.is_set()
    tally.add([b"x" * 100] * (WARMUP_MESSAGES - 1))
    assert tally.warming()
    tally.add([b"x" * 100])
    assert not tally.warming()
    tally.start()
    tally.add([stamped(b"x" * 100, 0)] * 2)
    assert tally.receiving()  # the producer has not said how many it sent
    link.report_sent(3)
    assert tally.receiving()
    tally.add([stamped(b"x" * 100, 0)])
    assert not tally.receiving()
    assert tally.result().count == 3
