"""Data through taureau.state: large arguments and results, the map_reduce shuffle, reducer
notifications, spills to durable storage, and a dead driver's state reclaimed by its lease."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from taureau.analytics import Executor, JobAbortedError, TaskError, job_state
from taureau.analytics.embedded_state import EmbeddedState
from taureau.analytics.space import results_path
from taureau.common import errors
from taureau.state import StateClient
from tests.analytics import helpers

ROOT = Path(__file__).resolve().parents[2]


def test_large_arguments_and_results_travel_through_state(ex):
    big = os.urandom(1_500_000)
    f = ex.call_async(helpers.sleep_then, (big, 1.0))  # 1.5 MB argument and result
    data = f"{ex.dir}/jobs/{f.job_id}/data"
    head = ex.client.open_hash_table(data).get(f"args-{f.job_id}-0".encode())
    assert head[:1] == b"C"  # the argument is in the job's data table, in chunks, not in the batch
    ex.wait([f])
    segment = results_path(f"{ex.dir}/jobs/{f.job_id}", 0)
    assert len(ex.client.open_hash_table(segment)) == 3  # the result: a head and two 1 MiB chunks
    assert f.result() == big
    assert not ex.client.exists(segment)  # every result of a finished segment read: freed
    deadline = time.monotonic() + 5
    while ex.client.exists(data):  # the finished job's inputs are freed too
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_map_reduce_by_key_shuffles_through_hash_tables(ex):
    lines = ["the cat sat", "on the mat", "the end", "a cat"] * 25
    with ex.client.listen(f"{ex.dir}/jobs", ops=["upsert"]) as sub:
        fs = ex.map_reduce(helpers.words, lines, helpers.count, reduce_by_key=True, num_reducers=3)
        assert len(fs) == 3
        expected = collections.Counter(w for line in lines for w in line.split())
        assert ex.get_result(fs) == dict(expected)
        job_dir = f"{ex.dir}/jobs/{fs.map_futures[0].job_id}"
        seen = collections.Counter()
        while (n := sub.get_notification(timeout=0.5)) is not None:
            seen[n.path.removeprefix(job_dir + "/")] += 1
    # Every mapper wrote one entry to each partition's table, then marked itself done. The small
    # map and reduce functions travelled in the batches: no data table was written at all.
    assert seen == {"shuffle/0": 100, "shuffle/1": 100, "shuffle/2": 100, "done": 100}
    deadline = time.monotonic() + 5
    while ex.client.exists(f"{job_dir}/shuffle") or ex.client.exists(f"{job_dir}/done"):
        assert time.monotonic() < deadline, "the finished shuffle was not freed"
        time.sleep(0.02)


def test_map_reduce_without_key_reduces_the_list_of_map_results(ex):
    fs = ex.map_reduce(helpers.square, range(20), sorted)
    assert ex.get_result(fs) == sorted(x * x for x in range(20))


def test_a_custom_partitioner_places_keys(ex):
    def pairs(x):
        return [(x % 4, x)]

    fs = ex.map_reduce(pairs, range(16), lambda k, vs: sorted(vs), reduce_by_key=True, num_reducers=4,
                       partitioner=lambda key, n: key)  # fmt: skip
    assert [f.result() for f in fs] == [{r: list(range(r, 16, 4))} for r in range(4)]


def test_early_reducers_wait_for_their_partitions_through_notifications(ex):
    fs = ex.map_reduce(helpers.sleep_then, [(i, 0.3) for i in range(6)], sum, spawn_reducer=0, chunksize=1)
    assert ex.get_result(fs) == 15
    ex.wait(fs.map_futures)  # the reducer can finish before the mappers' outcomes arrive
    reducer = fs[0].stats
    last_map_end = max(f.stats["worker_end_tstamp"] for f in fs.map_futures)
    # The reducer was running (waiting on the `done` table's notifications) before the last mapper ended.
    assert reducer["worker_start_tstamp"] < last_map_end < reducer["worker_end_tstamp"]


def test_a_failed_mapper_aborts_its_reducers(ex):
    fs = ex.map_reduce(helpers.fail_on, [(i, 2) for i in range(5)], sum, spawn_reducer=0)
    ex.wait(fs + fs.map_futures, throw_except=False, timeout=30)
    with pytest.raises(TaskError, match="bad input 2"):
        fs.map_futures[2].result()
    with pytest.raises(JobAbortedError, match="mapper 2 failed"):
        fs[0].result()


def test_tasks_share_state_with_the_driver(ex):
    def push(x):
        st = job_state()
        st.queue("inbox").enqueue(str(x).encode())
        st.put(f"obj-{x}", {"x": x})
        return x

    ex.get_result(ex.map(push, range(5)))
    q = ex.state.queue("inbox")
    assert sorted(int(q.dequeue()) for _ in range(5)) == list(range(5))
    assert ex.state.get("obj-3") == {"x": 3}
    with pytest.raises(errors.KeyNotFoundError):
        ex.state.get("missing")


def test_results_over_the_budget_spill_to_durable_storage_and_load_back():
    with Executor(workers=2, state_budget=4 << 20, progress=False, block_size=8 << 20) as ex2:
        fs = ex2.map(helpers.blob, [(70_000, i) for i in range(300)])  # 21 MB of results, 2 segments
        ex2.wait(fs)
        deadline = time.monotonic() + 10
        # The monitor thread accounts results and spills a little after they arrive.
        while not (ex2.results.spills and ex2.results.in_memory <= 4 << 20) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ex2.results.spills >= 1
        assert ex2.results.in_memory <= 4 << 20
        assert not ex2.client.exists(results_path(f"{ex2.dir}/jobs/{fs[0].job_id}", 0))
        dumps = list(Path(ex2._embedded.data_dir).rglob("results-0.dump"))
        assert len(dumps) == 1 and dumps[0].stat().st_size > 256 * 70_000
        values = ex2.get_result(fs)  # segment 0 is loaded back from its dump
        assert values == [bytes([i % 256]) * 70_000 for i in range(300)]


def test_a_full_pool_spills_finished_results_and_runs_the_call_again():
    # 6 blocks of 8 MiB: the executor's root takes one, the first job's 12 MB of results three
    # or four (as its table happens to split), so at most two are left where the second's 24 MB
    # need at least three, however its table splits: a spill is certain, not a matter of timing.
    with Executor(workers=2, progress=False, block_size=8 << 20, blocks=6) as ex3:
        first = ex3.map(helpers.blob, [(3_000_000, 1)] * 4)
        ex3.wait(first)
        second = ex3.map(helpers.blob, [(6_000_000, 2)] * 4)
        assert ex3.get_result(second) == [b"\x02" * 6_000_000] * 4
        assert ex3.results.spills >= 1
        assert not ex3.client.exists(results_path(f"{ex3.dir}/jobs/{first[0].job_id}", 0))


DRIVER = textwrap.dedent("""
    import sys, time
    from taureau.analytics import Executor
    ex = Executor(sys.argv[1], backend="local", workers=1, progress=False)
    print(ex.dir, ex.call_async(bytes, 200_000).job_id, flush=True)
    ex.get_result(ex.map(bytes, [200_000]))
    print("stored", flush=True)
    time.sleep(600)
""")


def test_a_dead_drivers_state_is_reclaimed_after_its_lease(tmp_path):
    state = EmbeddedState(block_size=1 << 20, blocks=16, lease_ms=500, data_dir=str(tmp_path / "state"))
    proc = None
    try:
        script = tmp_path / "driver.py"
        script.write_text(DRIVER)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.Popen([sys.executable, str(script), state.address], stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        executor_dir = proc.stdout.readline().split()[0]
        assert proc.stdout.readline().strip() == "stored"
        client = StateClient(state.address)
        time.sleep(1.5)  # three leases: the live driver keeps renewing
        assert client.exists(executor_dir) and client.ls(f"{executor_dir}/jobs")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while client.exists(executor_dir):
            assert time.monotonic() < deadline, "the dead driver's state was not reclaimed"
            time.sleep(0.1)
        assert client.stats()["blocks_free"] == 16  # every block of the job is back in the pool
        client.disconnect()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        state.close()


SPILLING_DRIVER = textwrap.dedent("""
    import sys, time
    from taureau.analytics import Executor
    address = sys.argv[1] if sys.argv[1] != "embedded" else None
    ex = Executor(address, backend="local", workers=1, progress=False, state_budget=1 << 20)
    fs = ex.map(bytes, [100_000] * 40)  # 4 MB of results in state: over the budget, they spill
    ex.wait(fs)
    while not ex.results.spills:
        time.sleep(0.05)
    print(ex.dir, ex._embedded.data_dir if ex._embedded else "-", flush=True)
    time.sleep(600)
""")


def _spilling_driver(tmp_path, address: str) -> tuple[subprocess.Popen, str, str]:
    script = tmp_path / "spilling_driver.py"
    script.write_text(SPILLING_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, str(script), address], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    executor_dir, data_dir = proc.stdout.readline().split()
    return proc, executor_dir, data_dir


def test_a_dead_drivers_spills_are_deleted_with_its_state_after_its_lease(tmp_path):
    data_dir = tmp_path / "state"
    # A lease long enough that a live driver starved by a loaded machine still renews in time.
    state = EmbeddedState(block_size=1 << 20, blocks=32, lease_ms=2000, data_dir=str(data_dir))
    proc = None
    try:
        proc, executor_dir, _ = _spilling_driver(tmp_path, state.address)
        dumps = list(data_dir.rglob("*.dump"))
        assert dumps, "the driver spilled nothing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        client = StateClient(state.address)
        deadline = time.monotonic() + 30  # lease + grace: 4 s
        while client.exists(executor_dir) or any(p.exists() for p in dumps):
            assert time.monotonic() < deadline, "the dead driver's state or spills were not reclaimed"
            time.sleep(0.1)
        assert not list(data_dir.rglob("*.dump"))  # no spill of it is left on durable storage
        assert client.stats()["blocks_free"] == 32
        client.disconnect()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        state.close()


def test_a_dead_drivers_embedded_store_removes_its_data_and_spills(tmp_path):
    proc, _, data_dir = _spilling_driver(tmp_path, "embedded")
    try:
        assert list(Path(data_dir).rglob("*.dump")), "the driver spilled nothing"
        os.kill(proc.pid, signal.SIGKILL)  # its store child sees stdin close and exits
        proc.wait()
        deadline = time.monotonic() + 15
        while Path(data_dir).exists():
            assert time.monotonic() < deadline, f"{data_dir} outlived its driver"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
