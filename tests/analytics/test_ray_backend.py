"""Executor(backend="ray"): the same jobs as Ray tasks on a local Ray instance.

Ray is about 240 MB installed and takes ~10 s to start, so these tests are opt-in:
    pip install -e '.[test,ray]' && TAUREAU_TEST_RAY=1 python -m pytest tests/analytics/test_ray_backend.py
Once asked for, a missing Ray is an import error, not a skip."""

from __future__ import annotations

import os

import pytest

from taureau.analytics import CallTimeoutError, Executor, TaskError
from tests.analytics import faults, helpers

if not os.environ.get("TAUREAU_TEST_RAY"):
    pytest.skip("opt-in: set TAUREAU_TEST_RAY=1 (needs pip install -e '.[ray]')", allow_module_level=True)

import ray  # noqa: E402


@pytest.fixture(scope="module")
def rx():
    with Executor(backend="ray", workers=2, progress=False) as executor:
        yield executor


def test_map_and_call_async_run_as_ray_tasks(rx):
    fs = rx.map(helpers.square, range(30))
    assert rx.get_result(fs) == [x * x for x in range(30)]
    pids = {int(f.stats["worker"].rsplit(":", 1)[1]) for f in fs}
    assert os.getpid() not in pids  # Ray's worker processes, not the driver
    assert rx.backend.name == "ray" and ray.is_initialized()


def test_errors_and_large_results(rx):
    with pytest.raises(TaskError, match="bad input 1") as info:
        rx.call_async(helpers.fail_on, (1, 1)).result()
    assert info.value.attempts == 3 and "helpers.py" in info.value.remote_traceback
    assert rx.call_async(helpers.blob, 1_500_000).result() == b"x" * 1_500_000


def test_map_reduce_with_early_reducers(rx):
    fs = rx.map_reduce(helpers.sleep_then, [(i, 0.3) for i in range(6)], sum, spawn_reducer=0, chunksize=1)
    assert rx.get_result(fs) == 15
    rx.wait(fs.map_futures)  # the reducer can finish before the mappers' outcomes arrive
    assert fs[0].stats["worker_start_tstamp"] < max(f.stats["worker_end_tstamp"] for f in fs.map_futures)
    lines = ["x y", "y z", "z"] * 5
    counts = rx.get_result(rx.map_reduce(helpers.words, lines, helpers.count, reduce_by_key=True))
    assert counts == {"x": 5, "y": 10, "z": 10}


def test_calls_over_their_timeout_fail_and_are_cancelled(rx):
    fs = rx.map(helpers.sleep_then, [(0, 0.0), (1, 60.0), (2, 0.0)], timeout=2.0)  # one call per Ray task
    with pytest.raises(CallTimeoutError, match="timeout of 2 s"):
        fs[1].result(timeout=30)
    assert rx.get_result([fs[0], fs[2]], timeout=30) == [0, 2]
    assert rx.get_result(rx.map(helpers.square, range(4)), timeout=30) == [0, 1, 4, 9]


def test_a_killed_ray_worker_is_retried(rx, tmp_path):
    f, victim = faults.kill_first_attempt(rx, tmp_path)
    assert f.result(timeout=60) != victim
    assert f.stats["attempts"] == 2
