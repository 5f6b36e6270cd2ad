"""The executor's API (Lithops' FunctionExecutor) and its faults, on the embedded backend."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from taureau.analytics import (
    ALL_COMPLETED,
    ALWAYS,
    ANY_COMPLETED,
    BackendError,
    CallTimeoutError,
    Executor,
    ExecutorClosedError,
    TaskError,
    UnpicklableError,
    UnsupportedOptionError,
    progress,
)
from tests.analytics import faults, helpers


def test_map_returns_results_in_order(ex):
    assert ex.get_result(ex.map(helpers.square, range(50))) == [x * x for x in range(50)]


def test_call_async_spreads_tuples_and_passes_dicts_as_keywords(ex):
    assert ex.call_async(helpers.add, (1, 2)).result() == 3
    assert ex.call_async(helpers.add, {"a": 1, "b": 2, "c": 3}).result() == 6
    assert ex.get_result(ex.map(helpers.add, [1, 2], extra_args=(10,))) == [11, 12]
    assert ex.call_async(lambda: "no arguments", ()).result() == "no arguments"
    assert ex.call_async(len, "abcd").result() == 4  # one parameter: the element is the argument


def test_a_raising_call_reaches_the_caller_with_its_remote_traceback_and_the_others_go_on(ex):
    fs = ex.map(helpers.fail_on, range(8), extra_args=(3,))
    done, not_done = ex.wait(fs, throw_except=False)
    assert not not_done
    assert [f.success for f in fs] == [x != 3 for x in range(8)]
    with pytest.raises(TaskError) as info:
        fs[3].result()
    err = info.value
    assert err.type_name == "ValueError"
    assert isinstance(err.cause, ValueError) and str(err.cause) == "bad input 3"
    assert "in fail_on" in err.remote_traceback and 'raise ValueError(f"bad input {x}")' in err.remote_traceback
    assert "remote traceback" in str(err)
    assert ex.get_result(fs, throw_except=False) == [0, 1, 2, None, 4, 5, 6, 7]
    with pytest.raises(TaskError):
        ex.get_result(fs)


def test_failures_are_retried_the_configured_number_of_times(ex, tmp_path):
    marker = str(tmp_path / "always")
    with pytest.raises(TaskError) as info:
        ex.call_async(helpers.record_then_fail, marker).result()
    assert info.value.attempts == 3
    assert len(Path(marker).read_text().splitlines()) == 3  # retries=2: three runs in all
    flaky = str(tmp_path / "flaky")
    f = ex.call_async(helpers.fail_first_attempts, (flaky, 2))
    assert f.result() == 3 and f.stats["attempts"] == 3


def test_retries_zero_runs_a_failing_call_once(tmp_path):
    marker = str(tmp_path / "once")
    with Executor(workers=1, retries=0, progress=False) as ex1, pytest.raises(TaskError) as info:
        ex1.call_async(helpers.record_then_fail, marker).result()
    assert info.value.attempts == 1
    assert len(Path(marker).read_text().splitlines()) == 1


def test_an_unpicklable_argument_is_an_error_before_anything_runs(ex, tmp_path):
    marker = str(tmp_path / "ran")
    items = [(marker, 1), (marker, 2), (marker, threading.Lock())]
    with pytest.raises(UnpicklableError) as info:
        ex.map(helpers.touch, items)
    assert "call 2" in str(info.value) and "positional argument 1, a lock" in str(info.value)
    time.sleep(0.3)
    assert not os.path.exists(marker)  # the good calls were not started either
    with pytest.raises(UnpicklableError, match="not callable"):
        ex.call_async(42, 1)


def test_a_worker_killed_mid_call_is_retried_elsewhere(ex, tmp_path):
    f, victim = faults.kill_first_attempt(ex, tmp_path)
    assert f.result(timeout=30) != victim
    assert f.stats["attempts"] == 2
    assert len(ex.backend.workers()) == 2  # the pool replaced the dead worker
    assert victim not in [pid for _, pid in ex.backend.workers()]


def test_a_straggler_is_reexecuted_speculatively(ex, tmp_path):
    started = time.monotonic()
    fs = ex.map(helpers.slow_first_time, range(8), extra_args=(str(tmp_path), 7, 20.0), chunksize=1)
    assert ex.get_result(fs, timeout=15) == list(range(8))
    assert time.monotonic() - started < 10  # the first copy still sleeps; the second won
    assert fs[7].stats["speculative_copy"] is True
    assert not any(f.stats["speculative_copy"] for f in fs[:7])
    # The losing copy's worker was stopped: nothing queues behind a 20 s sleep.
    assert ex.get_result(ex.map(helpers.square, range(8), chunksize=1), timeout=5) == [x * x for x in range(8)]


def test_without_speculation_the_straggler_is_waited_for(tmp_path):
    with Executor(workers=2, speculation=False, progress=False) as ex2:
        fs = ex2.map(helpers.slow_first_time, range(4), extra_args=(str(tmp_path), 3, 1.0), chunksize=1)
        started = time.monotonic()
        assert ex2.get_result(fs) == [0, 1, 2, 3]
        assert time.monotonic() - started >= 0.9
        assert fs[3].stats["speculative_copy"] is False


def test_wait_return_when(ex):
    fs = ex.map(helpers.sleep_then, [(0.0, 0.0), (1, 1.5)], chunksize=1)
    done, not_done = ex.wait(fs, return_when=ALWAYS)
    assert len(done) + len(not_done) == 2 and fs[1] in not_done
    done, not_done = ex.wait(fs, return_when=ANY_COMPLETED)
    assert fs[0] in done and fs[1] in not_done
    done, not_done = ex.wait(fs, return_when=ALL_COMPLETED)
    assert done == fs and not_done == []
    assert (ALWAYS, ANY_COMPLETED, ALL_COMPLETED) == (0, -1, 100)  # Lithops' values


def test_a_finished_call_is_reported_while_the_next_in_its_batch_runs(ex):
    fs = ex.map(helpers.sleep_then, [(0, 0.0), (1, 3.0)], chunksize=2)  # one batch, one worker
    done, not_done = ex.wait(fs, return_when=ANY_COMPLETED)
    assert done == [fs[0]] and not_done == [fs[1]]  # not held back until the slow call ends
    assert ex.get_result(fs) == [0, 1]
    assert fs[0].stats["worker"] == fs[1].stats["worker"]  # the same batch


def test_a_call_over_its_timeout_fails_and_the_calls_behind_it_run_elsewhere(ex, tmp_path):
    marker = str(tmp_path / "attempts")
    fs = ex.map(helpers.record_then_sleep, [(marker, 0.0, 0), (marker, 60.0, 1), (marker, 0.0, 2)], chunksize=3,
                timeout=1.0)  # one batch  # fmt: skip
    with pytest.raises(CallTimeoutError, match="ran longer than its timeout of 1 s"):
        fs[1].result(timeout=30)  # a plain TimeoutError here would mean the limit was not enforced
    assert ex.get_result([fs[0], fs[2]], timeout=30) == [0, 2]
    # The worker sleeping through the call was stopped and replaced: both workers serve.
    more = ex.map(helpers.sleep_then, [(i, 0.2) for i in range(4)], chunksize=1)
    assert ex.get_result(more, timeout=30) == [0, 1, 2, 3]
    assert len(Path(marker).read_text().splitlines()) == 3  # the timed-out call was not retried
    for bad in (0, -1, float("inf"), "5"):
        with pytest.raises(ValueError, match="timeout is a positive number"):
            ex.call_async(helpers.square, 1, timeout=bad)


def test_wait_for_a_percentage_of_the_calls(ex):
    fs = ex.map(helpers.sleep_then, [(0, 0.0), (1, 0.0), (2, 0.0), (3, 3.0)], chunksize=1)
    done, not_done = ex.wait(fs, return_when=50)  # Lithops: return_when is a percentage
    assert len(done) >= 2 and fs[3] in not_done
    with pytest.raises(ValueError, match="percentage"):
        ex.wait(fs, return_when=101)
    ex.wait(fs)


def test_positional_parameters_follow_lithops(ex):
    fs = ex.map(helpers.add, [1, 2, 3], 1, (10,))  # map(function, iterdata, chunksize, extra_args)
    assert ex.get_result(fs) == [11, 12, 13]
    counts = ex.get_result(ex.map_reduce(helpers.words, ["a b", "b"], helpers.count, 1, reduce_by_key=True))
    assert counts == {"a": 1, "b": 2}


def test_extra_env_is_set_for_the_calls_of_its_job_only(ex, monkeypatch):
    monkeypatch.delenv("TAUREAU_TEST_VAR", raising=False)
    assert ex.call_async(helpers.env, "TAUREAU_TEST_VAR", {"TAUREAU_TEST_VAR": "one"}).result() == "one"
    fs = ex.map(helpers.env, ["TAUREAU_TEST_VAR"] * 6, extra_env={"TAUREAU_TEST_VAR": "two"})
    assert ex.get_result(fs) == ["two"] * 6
    assert ex.get_result(ex.map(helpers.env, ["TAUREAU_TEST_VAR"] * 6)) == [None] * 6  # restored after
    reducer = ex.map_reduce(helpers.square, [1, 2], lambda xs: (sum(xs), os.environ["TAUREAU_TEST_VAR"]),
                            extra_env={"TAUREAU_TEST_VAR": "three"})  # fmt: skip
    assert ex.get_result(reducer) == (5, "three")


def test_a_bad_extra_env_is_an_error_before_anything_runs(ex):
    with pytest.raises(TypeError, match="dict of str to str"):
        ex.map(helpers.square, [1], extra_env=["A=1"])
    with pytest.raises(TypeError, match="strings"):
        ex.call_async(helpers.square, 1, {"A": 1})
    with pytest.raises(ValueError, match="not a valid environment variable name"):
        ex.call_async(helpers.square, 1, {"A=B": "1"})
    with pytest.raises(ValueError, match="at most"):
        ex.call_async(helpers.square, 1, {"BIG": "x" * 70_000})
    assert ex.call_async(helpers.square, 3).result() == 9


def test_wait_and_get_result_time_out(ex):
    f = ex.call_async(helpers.sleep_then, (1, 1.0))
    done, not_done = ex.wait([f], timeout=0.1)
    assert not_done == [f]
    with pytest.raises(TimeoutError):
        ex.get_result([f], timeout=0.1)
    with pytest.raises(TimeoutError):
        f.result(timeout=0.05)
    assert f.result(timeout=10) == 1


def test_progress_bar_counts_calls_on_a_terminal():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80)
    with progress.bar(10, True, console) as update:
        update(4)
        update(10)
    assert "10/10" in out.getvalue()
    quiet = io.StringIO()
    with progress.bar(10, False, Console(file=quiet)) as update:
        update(10)
    assert quiet.getvalue() == ""


def test_get_result_shows_progress_when_asked(ex, capsys):
    ex.get_result(ex.map(helpers.square, range(12)), show_progressbar=True)
    assert "12/12" in capsys.readouterr().err


def test_plot_draws_the_timeline(ex, tmp_path):
    fs = ex.map(helpers.sleep_then, [(i, 0.01) for i in range(10)])
    ex.get_result(fs)
    path = ex.plot(fs, dst=str(tmp_path / "timeline.png"))
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert int.from_bytes(data[16:20], "big") == 1300  # IHDR width: 13 inches at 100 dpi
    small = Path(ex.plot(fs, dst=str(tmp_path / "small.png"), figsize=(6, 3))).read_bytes()
    assert (int.from_bytes(small[16:20], "big"), int.from_bytes(small[20:24], "big")) == (600, 300)
    assert {f.stats["worker"] for f in fs} <= {name for name, _ in ex.backend.workers()} | {"local-0", "local-1"}


def test_a_closed_executor_refuses_work_and_fails_unfinished_calls():
    ex3 = Executor(workers=1, progress=False)
    f = ex3.call_async(helpers.sleep_then, (1, 5.0))
    ex3.close()
    assert f.error
    with pytest.raises(ExecutorClosedError):
        f.result()
    with pytest.raises(ExecutorClosedError):
        ex3.map(helpers.square, [1])


def test_bad_options_are_clear_errors_and_leave_the_executor_serving(ex, monkeypatch):
    with pytest.raises(BackendError, match="unknown backend 'lambda'"):
        Executor(backend="lambda", progress=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine without Ray: import ray fails
    with pytest.raises(BackendError, match=r"pip install 'taureau\[ray\]'"):
        Executor(backend="ray", progress=False)
    with pytest.raises(ValueError, match="spawn_reducer"):
        ex.map_reduce(helpers.words, ["a"], helpers.count, spawn_reducer=101)
    with pytest.raises(ValueError, match="num_reducers"):
        ex.map_reduce(helpers.words, ["a"], helpers.count, reduce_by_key=True, num_reducers=-1)
    assert ex.get_result(ex.map(helpers.square, range(3))) == [0, 1, 4]


# -- chunks: many calls in one batch, each with its own outcome ---------------------------------


def test_one_raising_call_of_a_chunk_fails_alone(ex):
    fs = ex.map(helpers.fail_on, range(8), 8, (3,))  # chunksize 8: the whole job is one batch
    ex.wait(fs, throw_except=False)
    assert [f.success for f in fs] == [x != 3 for x in range(8)]
    assert len({f.stats["worker"] for f in fs if f.success}) == 1  # they did share a batch
    assert [f.stats["attempts"] for f in fs if f.success] == [1] * 7
    with pytest.raises(TaskError, match="bad input 3") as info:
        fs[3].result()
    assert info.value.attempts == 3  # retried alone, without its chunk


def test_a_worker_killed_mid_chunk_reruns_only_the_unreported_calls(ex, tmp_path):
    fs = ex.map(helpers.chunk_member, range(6), 6, (str(tmp_path), 2))
    pid = tmp_path / "pid"
    deadline = time.monotonic() + 30
    while not pid.exists() or not pid.read_text():
        assert time.monotonic() < deadline, "call 2 never started"
        time.sleep(0.02)
    time.sleep(0.2)  # calls 0 and 1 were reported (within 5 ms of their end)
    victim = int(pid.read_text())
    os.kill(victim, 9)
    results = ex.get_result(fs, timeout=60)
    assert [x for x, _ in results] == list(range(6))
    runs = [len((tmp_path / f"{x}.runs").read_text().splitlines()) for x in range(6)]
    assert runs == [1, 1, 2, 1, 1, 1]  # before the victim: kept; the victim: again; after it: once, elsewhere
    assert [p for _, p in results[:2]] == [victim, victim]
    assert all(p != victim for _, p in results[2:])


# -- Lithops' options -----------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "option", "value"), [
    ("map", "runtime_memory", 1024), ("map", "obj_chunk_size", 1 << 20), ("map", "obj_chunk_number", 4),
    ("map", "obj_newline", None), ("map", "include_modules", ["numpy"]), ("map", "exclude_modules", ["os"]),
    ("call_async", "runtime_memory", 512), ("map_reduce", "map_runtime_memory", 512),
    ("map_reduce", "reduce_runtime_memory", 512), ("map_reduce", "obj_reduce_by_key", True),
    ("wait", "threadpool_size", 64), ("get_result", "threadpool_size", 64), ("clean", "cs", ["bucket/key"]),
    ("job_summary", "cloud_objects_n", 3),
])  # fmt: skip
def test_unsupported_lithops_options_are_refused_before_anything_runs(ex, call, option, value):
    args = {"map": (helpers.square, [1]), "call_async": (helpers.square, 1),
            "map_reduce": (helpers.square, [1], sum)}.get(call, ())  # fmt: skip
    jobs = len(ex._jobs)
    with pytest.raises(UnsupportedOptionError, match=f"{call}\\({option}=") as info:
        getattr(ex, call)(*args, **{option: value})
    assert isinstance(info.value, ValueError)
    assert len(ex._jobs) == jobs  # nothing was submitted


def test_lithops_defaults_of_unsupported_options_are_accepted(ex):
    fs = ex.map(helpers.square, [3], None, None, None, None, None, None, "\n", None, [], [])
    assert ex.get_result(fs, False, None, None, 0.05) == [9]


def test_extra_args_reduce_follow_the_reducers_own_arguments(ex):
    # map_reduce(map, iterdata, reduce, chunksize, extra_args, extra_args_reduce): Lithops' order
    assert ex.get_result(ex.map_reduce(helpers.square, range(4), helpers.total_plus, None, None, (100,))) == 114
    fs = ex.map_reduce(helpers.square, range(4), helpers.total_plus, extra_args_reduce={"offset": 1, "scale": 2})
    assert ex.get_result(fs) == 30
    with pytest.raises(TypeError, match="tuple, list or dict"):
        ex.map_reduce(helpers.square, range(4), helpers.total_plus, extra_args_reduce=5)


def test_wait_downloads_results_and_checks_its_interval(ex):
    big = ex.call_async(helpers.blob, (200_000, 7))  # through the state store
    done, not_done = ex.wait([big], download_results=True, wait_dur_sec=0.01)
    assert done == [big] and not not_done
    assert big._loaded and big.result() == b"\x07" * 200_000  # fetched by wait itself
    with pytest.raises(ValueError, match="wait_dur_sec"):
        ex.wait([big], wait_dur_sec=0)


def test_clean_removes_finished_jobs_and_keeps_running_ones_unless_forced():
    with Executor(workers=2, progress=False) as ex:
        done = ex.map(helpers.square, range(4))
        ex.wait(done)
        running = ex.call_async(helpers.sleep_then, (1, 3.0))
        assert ex.clean() == [done[0].job_id]
        assert not ex.client.exists(f"{ex.dir}/jobs/{done[0].job_id}")
        assert running.result(timeout=30) == 1  # kept: it was running
        other = ex.map(helpers.square, range(2))
        ex.wait(other)
        assert ex.clean(fs=[running]) == [running.job_id]  # only the futures' job
        assert [s["job_id"] for s in ex.job_summary()] == [other[0].job_id]
        slow = ex.call_async(helpers.sleep_then, (1, 3.0))
        assert set(ex.clean(force=True)) == {other[0].job_id, slow.job_id}
        assert ex.job_summary() == []


def test_job_summary_counts_each_job(ex, tmp_path):
    fs = ex.map(helpers.fail_on, range(6), extra_args=(4,))
    ex.wait(fs, throw_except=False)
    flaky = ex.call_async(helpers.fail_first_attempts, (str(tmp_path / "flaky"), 1))
    flaky.result()
    summary = {s["job_id"]: s for s in ex.job_summary()}
    mapped, called = summary[fs[0].job_id], summary[flaky.job_id]
    assert (mapped["kind"], mapped["calls"], mapped["done"], mapped["failed"]) == ("call", 6, 6, 1)
    assert mapped["retried"] == 1  # the failing call ran three times; the others once
    assert called["retried"] == 1 and called["failed"] == 0
    assert mapped["wall_s"] >= 0 and mapped["mean_call_s"] >= 0
    assert mapped["submitted"] <= mapped["finished"]
