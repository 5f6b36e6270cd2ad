"""Executor: Lithops' FunctionExecutor API over warm workers, with data in `taureau.state`."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from taureau.analytics import plot as timeline
from taureau.analytics import progress, wire
from taureau.analytics.backends import create_backend
from taureau.analytics.calls import Calls
from taureau.analytics.errors import ExecutorClosedError
from taureau.analytics.futures import FuturesList, ResponseFuture, summarize
from taureau.analytics.options import refuse_unsupported
from taureau.analytics.results import ResultStore, segment_calls
from taureau.analytics.scheduler import Job, Policy, Scheduler
from taureau.analytics.shuffle import ABORT, done_path
from taureau.analytics.space import JobSpace, LazyTable, executor_dir, job_dir, open_unrenewed, put_blob
from taureau.common import errors
from taureau.state import StateClient
from taureau.state.blocks import GROW_RETRY_S

log = logging.getLogger("taureau.analytics")

# Lithops' values: wait's return_when is also a percentage of the futures (1-100) to wait for.
ALWAYS, ANY_COMPLETED, ALL_COMPLETED = 0, -1, 100
MAX_CALLS_PER_JOB = 1_000_000  # every call holds a future and its pickled arguments
MONITOR_TICK_S = 0.05
WAIT_TICK_S = 0.1  # a wait re-checks this often even without news (a closing executor, its timeout)
MAX_AUTO_CHUNK = 256  # calls per batch at most unless chunksize says otherwise (Pool.map's rule, capped)
JOB_PREFIX = {"call": "A", "map": "M", "reduce": "R"}  # job ids as Lithops names them (A000, M001)


def _positive(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    if not (isinstance(value, int | float) and 0 < value < math.inf):
        raise ValueError(f"{name} is a positive number of seconds, not {value!r}")
    return float(value)


def _whole_job(fs: Any) -> Calls | None:
    """The job's columns when `fs` is a job's own list of futures (map's or map_reduce's), whose
    progress and values can be read per job rather than per future."""
    return fs.unchanged_job() if isinstance(fs, FuturesList) else None


class Executor:
    """Run Python functions on warm workers; Lithops' FunctionExecutor API.

    >>> with Executor() as ex:                  # embedded: local worker processes + a state store
    ...     futures = ex.map(lambda x: x * x, range(10))
    ...     print(ex.get_result(futures))
    >>> Executor("localhost:9090")              # a running standalone's function workers and state
    >>> Executor(backend="ray")                 # Ray tasks (ray.init() locally unless ray_address)

    `retries`: a call that raises or whose worker dies runs again up to this many times.
    `speculation`: a call running 1.5x its job's median once 75% of the job is done gets a
    second copy on another worker; the first result wins. `state_budget`: bytes of results a
    job keeps in the state pool before finished segments spill to durable storage.
    """

    def __init__(self, address: str | None = None, *, backend: str | None = None, workers: int | None = None,
                 retries: int = 2, speculation: bool = True, state_budget: int | None = None,
                 lease_ms: int = 10_000, block_size: int = 8 << 20, blocks: int = 256,
                 progress: bool | None = None, admin_url: str | None = None, ray_address: str | None = None,
                 policy: Policy | None = None) -> None:  # fmt: skip
        name = backend or ("standalone" if address else "local")
        self.executor_id = uuid.uuid4().hex[:12]
        self.dir = executor_dir(self.executor_id)
        self.progress = progress
        self._embedded = None
        if address is None:
            from taureau.analytics.embedded_state import EmbeddedState

            self._embedded = EmbeddedState(block_size=block_size, blocks=blocks, lease_ms=lease_ms)
            address = self._embedded.address
        self.state_address = address
        self._closed = False
        self._lock = threading.Lock()
        self._job_count = 0
        self._jobs: dict[str, tuple[Job, FuturesList]] = {}
        self._stop = threading.Event()
        self._resume_at: float | None = None  # when calls refused by a full pool run again
        try:
            self.client = StateClient(address)
            meta = open_unrenewed(self.client, self.client.create_hash_table, f"{self.dir}/meta")
            meta.multi_put({b"pid": str(os.getpid()).encode(), b"started": repr(time.time()).encode()})
            self.backend = create_backend(name, workers=workers, admin_url=admin_url, state_address=address,
                                          ray_address=ray_address)  # fmt: skip
            self.policy = policy or Policy(retries=retries, speculation=speculation)
            self.scheduler = Scheduler(self.backend, self.policy, address, self.dir)
            self.results = ResultStore(self.client, self.executor_id, state_budget, self._segment_finished,
                                       f"{self.dir}/meta")  # fmt: skip
            self.backend.start(self.scheduler, address)
        except BaseException:
            self._close_state()
            raise
        self.state = JobSpace(self.client, f"{self.dir}/shared", renew=False)
        self._monitor = threading.Thread(target=self._monitor_loop, name="analytics-monitor", daemon=True)
        self._monitor.start()

    # -- submitting ---------------------------------------------------------------------------

    # Positional parameters are in Lithops' order, so Lithops code calls these unchanged; the
    # Lithops options with no meaning here are refused at anything but their unused value
    # (options.py says why), Taureau's own options are keyword-only after them.

    def call_async(self, func: Callable[..., Any], data: Any, extra_env: dict[str, str] | None = None,
                   runtime_memory: int | None = None, timeout: float | None = None,
                   include_modules: list[str] | None = None, exclude_modules: list[str] | None = None, *,
                   extra_args: Any = None) -> ResponseFuture:  # fmt: skip
        """Run func on data (a tuple/list spreads over several parameters, a dict of parameter
        names is passed as keywords) and return its future. `extra_env`: environment
        variables set on the worker while the call runs. `timeout`: seconds the call may run
        before it fails with CallTimeoutError (not retried)."""
        refuse_unsupported("call_async", runtime_memory=runtime_memory, include_modules=include_modules,
                           exclude_modules=exclude_modules)  # fmt: skip
        return self._submit(func, [data], extra_args=extra_args, extra_env=extra_env, timeout=timeout)[0]

    def map(self, map_function: Callable[..., Any], map_iterdata: Iterable[Any], chunksize: int | None = None,
            extra_args: Any = None, extra_env: dict[str, str] | None = None, runtime_memory: int | None = None,
            obj_chunk_size: int | None = None, obj_chunk_number: int | None = None, obj_newline: str | None = "\n",
            timeout: float | None = None, include_modules: list[str] | None = None,
            exclude_modules: list[str] | None = None) -> FuturesList:  # fmt: skip
        """One call of map_function per element of map_iterdata. `chunksize` calls travel
        together to a worker (default: four batches per worker, at most 256 calls each)."""
        refuse_unsupported("map", runtime_memory=runtime_memory, obj_chunk_size=obj_chunk_size,
                           obj_chunk_number=obj_chunk_number, obj_newline=obj_newline,
                           include_modules=include_modules, exclude_modules=exclude_modules)  # fmt: skip
        return self._submit(map_function, map_iterdata, extra_args=extra_args, chunksize=chunksize,
                            extra_env=extra_env, timeout=timeout)  # fmt: skip

    def map_reduce(self, map_function: Callable[..., Any], map_iterdata: Iterable[Any],
                   reduce_function: Callable[..., Any], chunksize: int | None = None, extra_args: Any = None,
                   extra_args_reduce: Any = None, extra_env: dict[str, str] | None = None,
                   map_runtime_memory: int | None = None, reduce_runtime_memory: int | None = None,
                   timeout: float | None = None, obj_chunk_size: int | None = None,
                   obj_chunk_number: int | None = None, obj_newline: str | None = "\n",
                   obj_reduce_by_key: bool = False, spawn_reducer: int = 20,
                   include_modules: list[str] | None = None, exclude_modules: list[str] | None = None, *,
                   reduce_by_key: bool = False, num_reducers: int | None = None,
                   partitioner: Callable[[Any, int], int] | None = None) -> FuturesList:  # fmt: skip
        """Map, shuffle through the state store, reduce.

        Without reduce_by_key, one reducer gets the list of map results (in order).
        With reduce_by_key, each map call returns (key, value) pairs; they are partitioned by
        key (partitioner(key, n), default a stable hash) over num_reducers reducers, each
        calling reduce_function(key, values) per key; get_result gives one dict of all keys.
        `extra_args_reduce` (a tuple or dict) follows the reducer's own arguments.
        Reducers start once spawn_reducer percent of the map calls are done and wait for the
        rest through notifications on the job's namespace. `timeout` limits each map and
        each reduce call (a reducer's wait for its mappers counts)."""
        refuse_unsupported("map_reduce", map_runtime_memory=map_runtime_memory,
                           reduce_runtime_memory=reduce_runtime_memory, obj_chunk_size=obj_chunk_size,
                           obj_chunk_number=obj_chunk_number, obj_newline=obj_newline,
                           obj_reduce_by_key=obj_reduce_by_key, include_modules=include_modules,
                           exclude_modules=exclude_modules)  # fmt: skip
        if extra_args_reduce is not None:
            reduce_function = wire.WithExtraArgs(reduce_function, extra_args_reduce)
        if not 0 <= spawn_reducer <= 100:
            raise ValueError("spawn_reducer is a percentage (0-100)")
        partitions = (num_reducers or self.backend.slots) if reduce_by_key else 1
        if partitions < 1:
            raise ValueError("num_reducers must be at least 1")
        maps, map_job = self._prepare(
            map_function, map_iterdata, extra_args=extra_args, chunksize=chunksize, kind="map",
            extra=(partitions, reduce_by_key), partitioner=partitioner, extra_env=extra_env,
            timeout=timeout)  # fmt: skip
        reducers, red_job = self._prepare(
            reduce_function, [((), {})] * partitions, kind="reduce", raw_args=True, extra_env=extra_env, timeout=timeout,
            extras=[(r, len(maps), reduce_by_key) for r in range(partitions)], share_dir=map_job)  # fmt: skip
        assert red_job is not None
        if map_job is None:  # nothing to map: the reducers see empty input at once
            red_job.mappers = Job("none", "", "", "map", 0, 1, Calls(self.executor_id, "none", 0, self._fetcher(""),
                                                                     self._wait_one))  # fmt: skip
        else:
            red_job.mappers, map_job.reducers = map_job, red_job
            red_job.spawn_at = math.ceil(spawn_reducer / 100 * map_job.size)
        self.scheduler.submit(red_job)  # held until the mappers allow
        if map_job is not None:
            self.scheduler.submit(map_job)
        reducers.merge = reduce_by_key
        reducers.map_futures = maps  # type: ignore[attr-defined]
        return reducers

    def _submit(self, fn: Callable[..., Any], items: Iterable[Any], **options: Any) -> FuturesList:
        fs, job = self._prepare(fn, items, **options)
        if job is not None:
            self.scheduler.submit(job)
        return fs

    def _prepare(self, fn: Callable[..., Any], items: Iterable[Any], *, extra_args: Any = None,
                 chunksize: int | None = None, kind: str = "call", extra: Any = None,
                 extras: list[Any] | None = None, partitioner: Any = None, raw_args: bool = False,
                 share_dir: Job | None = None, extra_env: dict[str, str] | None = None,
                 timeout: float | None = None) -> tuple[FuturesList, Job | None]:  # fmt: skip
        if self._closed:
            raise ExecutorClosedError("the executor is closed")
        _positive("timeout", timeout, 0)
        items = list(items)
        if len(items) > MAX_CALLS_PER_JOB:
            raise ValueError(f"{len(items)} calls in one job; at most {MAX_CALLS_PER_JOB}")
        if not items:
            fs = FuturesList()
            fs.executor = self
            return fs, None
        # Everything is pickled before anything is stored or sent: a bad argument is an error
        # with nothing started.
        fn_blob = wire.dumps_function(fn, partitioner, wire.check_env(extra_env))
        payloads: list[Any]
        if raw_args:
            mode, payloads = wire.PICKLED, list(wire.dumps_args(items))
        else:
            mode, payloads = wire.call_payloads(fn, items, extra_args)
        with self._lock:
            job_id = f"{JOB_PREFIX[kind]}{self._job_count:03d}"
            self._job_count += 1
        jdir = share_dir.dir if share_dir is not None else job_dir(self.dir, job_id)
        data = LazyTable(self.client, f"{jdir}/data")  # opened only if something goes through state
        fn_key = f"fn-{job_id}"
        fn_inline = fn_blob if len(fn_blob) <= wire.INLINE_ARGS_MAX else None  # small: in every batch
        if fn_inline is None:
            put_blob(data.table(), fn_key, fn_blob)
        if kind == "map":
            open_unrenewed(self.client, self.client.open_or_create_hash_table, done_path(jdir))
        chunk = chunksize or max(1, min(MAX_AUTO_CHUNK, math.ceil(len(items) / (self.backend.slots * 4))))
        if timeout is not None and not self.backend.streams_outcomes:
            chunk = 1  # its batches report at their end: one call each, so a batch's time is its call's
        calls = Calls(self.executor_id, job_id, len(items), self._fetcher(jdir), self._wait_one)
        job = Job(job_id, jdir, fn_key, kind, len(items), chunk, calls, mode, payloads, extra=extra, extras=extras,
                  timeout=timeout, fn=fn_inline)  # fmt: skip
        fs = FuturesList.of_job(calls)  # its futures are made on first use
        fs.executor = self
        if mode == wire.PICKLED:
            for i, raw in enumerate(payloads):
                if len(raw) > wire.INLINE_ARGS_MAX:
                    job.arg_keys[i] = key = f"args-{job_id}-{i}"
                    put_blob(data.table(), key, raw)
                    payloads[i] = None
        job.has_data = data.opened
        with self._lock:
            self._jobs[job_id] = (job, fs)
        return fs, job

    def _fetcher(self, jdir: str) -> Callable[[int, tuple[str, int]], bytes]:
        def fetch(call_id: int, ref: tuple[str, int]) -> bytes:
            self._run_actions()  # account results the monitor has not seen yet, so reads free segments
            return self.results.read(jdir, call_id, ref[0])

        return fetch

    # -- waiting ------------------------------------------------------------------------------

    def wait(self, fs: Any = None, throw_except: bool = True, return_when: int = ALL_COMPLETED,
             download_results: bool = False, timeout: float | None = None, threadpool_size: int | None = None,
             wait_dur_sec: float | None = None,
             show_progressbar: bool | None = None) -> tuple[list[ResponseFuture], list[ResponseFuture]]:  # fmt: skip
        """(done, not_done) once return_when holds (ALWAYS: now; ANY_COMPLETED: one done;
        ALL_COMPLETED: all done; a number 1-100: that percentage done) or timeout passes. With
        throw_except, a failed call raises. `download_results`: the values of the done calls
        are loaded (those that went through the state store fetched) before it returns.
        `wait_dur_sec`: the longest pause between checks (default 0.1 s; an outcome wakes the
        wait at once whatever it is)."""
        refuse_unsupported("wait", threadpool_size=threadpool_size)
        if not (return_when == ANY_COMPLETED or 0 <= return_when <= 100):
            raise ValueError(f"return_when is ALWAYS, ANY_COMPLETED, ALL_COMPLETED or a percentage, not {return_when!r}")
        whole = _whole_job(fs)
        futures = self._resolve(fs)
        self._await(futures, whole, return_when, timeout, wait_dur_sec, show_progressbar)
        if whole is not None and whole.done == whole.size:
            done_fs, not_done = futures, []
            failed = [futures[min(whole.errors)]] if whole.errors else []
        else:
            done_fs = [f for f in futures if f.done]
            not_done = [f for f in futures if not f.done]
            failed = [f for f in done_fs if f.error]
        if throw_except and failed:
            failed[0].result()
        if download_results:
            for f in done_fs:
                f.result(throw_except=False)
        return done_fs, not_done

    def _await(self, futures: list[ResponseFuture] | None, whole: Calls | None, return_when: int,
               timeout: float | None, wait_dur_sec: float | None, show_progressbar: bool | None) -> int:  # fmt: skip
        """Wait until return_when holds for `futures` (or, for a job's own list, `whole`'s
        counters: no future need exist) or timeout passes; returns how many are done."""
        tick = _positive("wait_dur_sec", wait_dur_sec, WAIT_TICK_S)
        total = whole.size if whole is not None else len(futures or ())
        wanted = math.ceil(return_when * total / 100) if return_when > 0 else 1
        deadline = None if timeout is None else time.monotonic() + timeout
        show = self._show_progress(show_progressbar, return_when, total)
        pending = futures or []
        with progress.bar(total, show) as bar, self.scheduler.changed:
            while True:
                if whole is not None:
                    done = whole.done  # a job's own list: its count, no scan
                else:
                    pending = [f for f in pending if not f.done]  # only these can change
                    done = total - len(pending)
                bar(done)
                if return_when == ALWAYS or done >= wanted or done == total or self._closed:
                    return done
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return done
                self.scheduler.changed.wait(tick if left is None else min(left, tick))

    def get_result(self, fs: Any = None, throw_except: bool = True, timeout: float | None = None,
                   threadpool_size: int | None = None, wait_dur_sec: float | None = None,
                   show_progressbar: bool | None = None) -> Any:  # fmt: skip
        """The value of one future, or the list of values of a list (a map_reduce by key: one
        dict). TimeoutError if they are not all done within timeout."""
        refuse_unsupported("get_result", threadpool_size=threadpool_size)
        single = isinstance(fs, ResponseFuture)
        whole = _whole_job(fs)
        futures = None if whole is not None else self._resolve(fs)
        total = whole.size if whole is not None else len(futures or ())
        done = self._await(futures, whole, ALL_COMPLETED, timeout, wait_dur_sec, show_progressbar)
        if done < total:
            raise TimeoutError(f"{total - done} of {total} calls not done after {timeout}s")
        if whole is not None and not (whole.raws or whole.refs or (throw_except and whole.errors)):
            values = list(whole.values)  # all loaded: no call to make per future
        else:
            values = [f.result(throw_except=throw_except) for f in (futures if futures is not None else fs)]
        if single:
            return values[0]
        if getattr(fs, "merge", False):
            merged: dict[Any, Any] = {}
            for v in values:
                merged.update(v or {})
            return merged
        if isinstance(fs, FuturesList) and getattr(fs, "map_futures", None) is not None and len(values) == 1:
            return values[0]
        return values

    def _resolve(self, fs: Any) -> list[ResponseFuture]:
        if fs is None:
            with self._lock:
                return [f for _, fs_ in self._jobs.values() for f in fs_]
        if isinstance(fs, ResponseFuture):
            return [fs]
        return list(fs)

    def _wait_one(self, f: ResponseFuture, timeout: float | None) -> None:
        self.wait([f], throw_except=False, timeout=timeout, show_progressbar=False)
        if not f.done:
            raise TimeoutError(f"call {f.id} not done after {timeout}s")

    def _show_progress(self, asked: bool | None, return_when: int, total: int) -> bool:
        if asked is not None:
            return asked
        if self.progress is not None:
            return self.progress and return_when != ALWAYS
        return return_when != ALWAYS and total > 1 and progress.on_terminal()

    # -- timeline ---------------------------------------------------------------------------

    def plot(self, fs: Any = None, dst: str | None = None, figsize: tuple[float, float] = (13, 5)) -> str:
        """Draw the calls' timeline (per call, and per worker) to a PNG of `figsize` inches at
        100 dpi; returns its path."""
        futures = [f for f in self._resolve(fs) if f.done]
        return timeline.plot(futures, dst or os.path.join(os.getcwd(), f"{self.executor_id}-timeline.png"), figsize)

    # -- background work --------------------------------------------------------------------

    def _monitor_loop(self) -> None:
        renew_every = self.client.lease_ms / 3000
        next_renew = 0.0
        while not self._stop.wait(MONITOR_TICK_S):
            now = time.monotonic()
            if now >= next_renew:
                try:
                    self.client.renew_path(self.dir)  # the job's lease: everything under the executor
                    next_renew = now + renew_every
                except errors.StateError as exc:
                    log.warning("renewing %s failed: %s", self.dir, exc)
                    next_renew = now + 0.5
            if self._resume_at is not None and now >= self._resume_at:
                self._resume_at = None
                self.scheduler.resume_after_spill()
            try:
                self.scheduler.enforce_timeouts()
                self.scheduler.speculate()
                self.scheduler.pump_waiting()
                self._run_actions()
            except errors.StateError as exc:
                log.warning("analytics monitor: %s", exc)

    def _run_actions(self) -> None:
        actions = self.scheduler.actions
        spill = False
        while actions:
            what, arg = actions.popleft()
            if what == "stored":
                job, call_id, size = arg
                self.results.stored(job.dir, job.id, call_id, size)
                spill = spill or self.results.over_budget()
            elif what == "spill":
                spill = True
                self._spill(force=True)
            elif what == "finished":
                self._drop_inputs(arg)
            elif what == "abort":
                done = open_unrenewed(self.client, self.client.open_or_create_hash_table, done_path(arg.dir))
                done.upsert(ABORT, (arg.aborted or "a mapper failed").encode())
        if spill:
            self._spill(force=False)

    def _drop_inputs(self, job: Job) -> None:
        """A finished job's function, arguments and shuffle leave the pool (results stay until
        read or clean()); a map job's go with its reducers, which read them."""
        paths = [f"{job.dir}/data"] if job.has_data or (job.mappers is not None and job.mappers.has_data) else []
        if job.kind == "reduce":
            paths += [f"{job.dir}/shuffle", done_path(job.dir)]
        for path in paths:
            try:
                self.client.remove(path)
            except errors.PathNotFoundError:
                pass

    def _spill(self, *, force: bool) -> None:
        budget = self.results.budget
        target = 0 if force or budget is None else budget // 2
        freed = self.results.spill(self._finished_segments(), target)
        if not force:
            return
        if freed or self._resume_at is not None or not self.scheduler.spill_waiting:
            # A full block keeps refusing to grow for GROW_RETRY_S after the pool said no, even
            # once a spill made room: calls run again only after that, or they would use up
            # their retries on refusals the spill already answered.
            if self._resume_at is None:
                self._resume_at = time.monotonic() + GROW_RETRY_S
        else:
            self.scheduler.fail_waiting_spills(errors.OutOfMemoryError(
                "the state pool is full and no finished results are left to spill"))  # fmt: skip

    def _finished_segments(self) -> dict[str, bool]:
        return {path: self._segment_finished(path) for path in self.results.segments()}

    def _segment_finished(self, path: str) -> bool:
        """Is every call whose result may go to this results segment over?"""
        jdir = path.rsplit("/results/", 1)[0]
        calls = segment_calls(path)
        with self._lock:
            jobs = [job for job, _ in self._jobs.values() if job.dir == jdir]
        return all(job.calls.pending_in(calls.start, calls.stop) == 0 for job in jobs)

    # -- closing ----------------------------------------------------------------------------

    def clean(self, fs: Any = None, cs: Any = None, clean_cloudobjects: bool = True, clean_fn: bool = False,
              force: bool = False) -> list[str]:  # fmt: skip
        """Remove the data of finished jobs (all of them, or those of the futures `fs`) from the
        state store: results not yet read, spill dumps, functions and arguments. A job with
        calls still running is kept unless `force` (its calls then fail or lose their results).
        Returns the ids of the jobs removed. `clean_cloudobjects` and `clean_fn` change
        nothing: there are no cloud objects, and a job's function always goes with it."""
        refuse_unsupported("clean", cs=cs)
        with self._lock:
            chosen = None if fs is None else {f.job_id for f in self._resolve(fs)}
            by_dir: dict[str, list[tuple[str, Job]]] = {}
            for job_id, (job, _) in self._jobs.items():
                by_dir.setdefault(job.dir, []).append((job_id, job))
            # A map_reduce's map and reduce jobs share a directory: they go together or not at all.
            dirs = [d for d, jobs in by_dir.items()
                    if (chosen is None or any(j in chosen for j, _ in jobs))
                    and (force or all(job.calls.done == job.size for _, job in jobs))]  # fmt: skip
            removed = [job_id for d in dirs for job_id, _ in by_dir[d]]
            for job_id in removed:
                del self._jobs[job_id]
        for d in dirs:
            self.results.forget_job(d)
            try:
                self.client.remove(d)
            except errors.PathNotFoundError:
                pass
        return removed

    def job_summary(self, cloud_objects_n: int = 0) -> list[dict[str, Any]]:
        """One dict per job of this executor (Lithops' job summary, returned rather than written
        to a file): its id and kind, calls, done, failed, retried (ran more than once),
        speculative (a second copy won), submitted and finished (epoch seconds, None until a
        call ran), wall_s and mean_call_s."""
        refuse_unsupported("job_summary", cloud_objects_n=cloud_objects_n)
        with self._lock:
            jobs = list(self._jobs.values())
        return [summarize(job.id, job.kind, futures) for job, futures in jobs]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.scheduler.close(ExecutorClosedError("the executor was closed before the call finished"))
        self._stop.set()
        if self._monitor is not threading.current_thread():
            self._monitor.join(timeout=5)
        try:
            self.backend.close()
        finally:
            self._close_state()

    def _close_state(self) -> None:
        client = getattr(self, "client", None)
        results = getattr(self, "results", None)
        if results is not None:
            results.forget_all()  # spill dumps are files the directory's removal does not reach
        if client is not None:
            try:
                client.remove(self.dir)
            except errors.StateError:
                pass  # already gone, or the store is unreachable: the lease reclaims it
            client.disconnect()
        if self._embedded is not None:
            self._embedded.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

