"""Executor("host:port"): calls on a running standalone's function workers, data in its state."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import httpx
import pytest

from taureau.analytics import CallTimeoutError, Executor, TaskError
from tests.analytics import faults, helpers
from tests.e2e.harness import Standalone


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    server = Standalone(tmp_path_factory.mktemp("data"), state=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sx(standalone):
    with Executor(f"127.0.0.1:{standalone.state_port}", admin_url=standalone.admin_url, workers=2,
                  progress=False) as executor:  # fmt: skip
        yield executor


def test_calls_run_on_the_standalones_function_instances(standalone, sx):
    assert sx.get_result(sx.map(helpers.square, range(40))) == [x * x for x in range(40)]
    status = httpx.get(f"{standalone.admin_url}/admin/v3/functions/public/default/taureau-analytics/status").json()
    assert status["numRunning"] == 2
    fs = sx.map(helpers.sleep_then, [(None, 0.3)] * 4, chunksize=1)
    sx.wait(fs)
    workers = {f.stats["worker"] for f in fs}
    assert len(workers) == 2  # both instances ran calls at once
    pids = {int(w.rsplit(":", 1)[1]) for w in workers}
    assert os.getpid() not in pids and standalone.proc.pid not in pids


def test_errors_large_results_and_map_reduce(sx):
    with pytest.raises(TaskError, match="bad input 2") as info:
        sx.call_async(helpers.fail_on, (2, 2)).result()
    assert "helpers.py" in info.value.remote_traceback
    assert sx.call_async(helpers.blob, 2_000_000).result() == b"x" * 2_000_000
    fs = sx.map_reduce(helpers.words, ["a b", "b c", "c"], helpers.count, reduce_by_key=True, spawn_reducer=0)
    assert sx.get_result(fs) == {"a": 1, "b": 2, "c": 2}
    sx.wait(fs.map_futures)  # the reducer can finish before the mappers' outcomes arrive
    # Reducers start after all mappers: an instance may queue a call behind a waiting reducer.
    assert fs[0].stats["worker_start_tstamp"] >= max(f.stats["worker_end_tstamp"] for f in fs.map_futures)


@pytest.mark.parametrize("body,reason", [
    (b"not a pickle", "TypeError: not a task batch: str"),
    (b"\x80\x05garbage", "UnpicklingError"),
    (pickle.dumps({"not": "a batch"}), "TypeError: not a task batch: dict"),
])  # fmt: skip
def test_a_bad_batch_is_refused_and_the_instances_keep_serving(standalone, sx, body, reason):
    r = httpx.post(f"{standalone.admin_url}/functions/public/default/taureau-analytics", content=body, timeout=30)
    assert r.status_code == 500 and r.json()["reason"].startswith(reason)
    assert sx.get_result(sx.map(helpers.square, range(6))) == [x * x for x in range(6)]


def test_a_call_over_its_timeout_fails(sx):
    # The standalone cannot stop an invocation: the instance sleeps on, its result is dropped.
    f = sx.call_async(helpers.sleep_then, (1, 5.0), timeout=1.0)
    with pytest.raises(CallTimeoutError, match="timeout of 1 s"):
        f.result(timeout=4)
    assert sx.get_result(sx.map(helpers.square, range(4), timeout=30)) == [0, 1, 4, 9]


def test_a_killed_instance_is_retried(sx, tmp_path):
    f, victim = faults.kill_first_attempt(sx, tmp_path)
    assert f.result(timeout=60) != victim
    assert f.stats["attempts"] == 2


def _spill(ex: Executor, calls: int, data_dir: Path) -> tuple[list, list[Path]]:
    """Run a job whose results pass the executor's budget, wait until they spilled, and return
    its futures and the dump files under the standalone's data directory."""
    fs = ex.map(helpers.blob, [(70_000, i) for i in range(calls)])
    ex.wait(fs)
    deadline = time.monotonic() + 20
    while not any(s.spilled for s in ex.results._segments.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return fs, list(data_dir.rglob(f"{ex.executor_id}/{fs[0].job_id}/results-*.dump"))


def test_spill_dumps_are_deleted_with_their_job(standalone):
    with Executor(f"127.0.0.1:{standalone.state_port}", admin_url=standalone.admin_url, workers=2,
                  state_budget=1 << 20, progress=False) as ex:  # fmt: skip
        read, dumps = _spill(ex, 60, standalone.data_dir)  # 4 MB of results, one segment
        assert len(dumps) == 1 and dumps[0].stat().st_size > 60 * 70_000
        assert ex.get_result(read) == [bytes([i]) * 70_000 for i in range(60)]  # loaded back, then freed
        assert not dumps[0].exists()  # every result read: the dump went with the segment
        cleaned, dumps = _spill(ex, 60, standalone.data_dir)
        assert len(dumps) == 1
        ex.clean()
        assert not dumps[0].exists()
        closed, dumps = _spill(ex, 60, standalone.data_dir)
        assert len(dumps) == 1
    assert not dumps[0].exists()  # close() deletes what was never read
