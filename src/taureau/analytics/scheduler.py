"""The driver's scheduler: batches ready tasks onto a backend, turns outcomes into futures,
retries failures and lost workers, speculates on stragglers, holds reducers until their
mappers allow them to start. One lock guards everything here (the `Condition` waiters use)."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from taureau.analytics import wire
from taureau.analytics.backends.base import Backend
from taureau.analytics.errors import CallTimeoutError, JobAbortedError, TaskError, WorkerLostError
from taureau.analytics.futures import RUNNING, ResponseFuture
from taureau.analytics.wire import OK, STATE_FULL, Batch, Outcome, TaskSpec


@dataclass(slots=True)
class Policy:
    retries: int = 2  # a failed or lost call runs at most 1 + retries times
    speculation: bool = True
    speculation_quantile: float = 0.75  # Spark's defaults: start once 75% of a job is done,
    speculation_multiplier: float = 1.5  # for calls running 1.5x the median duration,
    speculation_min_s: float = 0.1  # and at least this long
    spill_retries: int = 3  # a call whose result found the pool full runs again after a spill


@dataclass(eq=False, slots=True)
class Job:
    id: str
    dir: str
    fn_key: str
    kind: str  # "call", "map" (map side of map_reduce) or "reduce"
    size: int
    chunk: int  # calls per batch
    fetch: Callable[[int, tuple[str, int]], bytes]
    done: int = 0
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    reducers: Job | None = None  # for a map job: its reduce job
    mappers: Job | None = None  # for a reduce job: its map job
    spawn_at: int = 0  # mappers done before reducers may start waiting for the rest
    held: list[Task] = field(default_factory=list)  # reducers not yet released
    aborted: str | None = None
    success: list[bool] = field(default_factory=list)  # per call, True once it succeeded
    timeout: float | None = None  # seconds a call may run (Lithops' timeout); None: no limit
    fn: bytes | None = None  # the pickled function, sent in every batch when it is small
    has_data: bool = False  # its data table exists in state (a large function or argument)


@dataclass(eq=False, slots=True)
class Task:
    job: Job
    call_id: int
    args: bytes | None
    args_key: str | None
    extra: Any
    future: ResponseFuture
    attempt: int = 0
    failures: int = 0
    spills: int = 0
    copies: int = 0  # batches holding this call that have not reported it yet
    finished: bool = False
    speculated: bool = False

    def spec(self) -> TaskSpec:
        return TaskSpec(self.call_id, self.attempt, self.job.kind, self.args, self.args_key, self.extra)


@dataclass(eq=False, slots=True)
class InFlight:
    batch: Batch
    tasks: dict[int, Task]  # call id -> task, for the calls not reported yet
    worker: str
    sent: float
    exclusive: bool
    early_reducer: bool
    expired: bool = False  # a call of it timed out: the rest of it is not timed from that start


class Scheduler:
    def __init__(self, backend: Backend, policy: Policy, state_address: str, executor_dir: str) -> None:
        self.backend = backend
        self.policy = policy
        self.state_address = state_address
        self.executor_dir = executor_dir
        self.changed = threading.Condition()
        self._ready: deque[Task] = deque()
        self._inflight: dict[int, InFlight] = {}
        self._per_worker: dict[str, deque[int]] = {}  # batches in the order the worker runs them
        self._worker_event: dict[str, float] = {}  # last time a batch of the worker moved
        self._early_reducers = 0
        self._cancelled: set[str] = set()  # workers whose batches were cancelled (killed)
        self._batch_ids = itertools.count(1)
        self._jobs: list[Job] = []
        self.actions: deque[tuple[str, Any]] = deque()  # state work for the monitor thread
        self.spill_waiting: list[Task] = []
        self.closed = False

    # -- submission ---------------------------------------------------------------------------

    def submit(self, job: Job, tasks: list[Task]) -> None:
        with self.changed:
            job.success = [False] * job.size
            self._jobs.append(job)
            if job.kind == "reduce":
                job.held.extend(tasks)
            else:
                self._ready.extend(tasks)
            self._pump()

    def _pump(self) -> None:
        """Send ready calls while the backend takes them. Called with the lock held."""
        ready = self._ready
        while ready and not self.closed:
            job = ready[0].job
            tasks: list[Task] = []
            size = 0
            while ready and ready[0].job is job and len(tasks) < job.chunk:
                t = ready[0]
                if tasks and size + len(t.args or b"") > wire.BATCH_BYTES_MAX:
                    break
                ready.popleft()
                if t.finished:
                    continue
                tasks.append(t)
                size += len(t.args or b"")
            if tasks and not self._send(job, tasks):
                ready.extendleft(reversed(tasks))
                break
        self._release_reducers()

    def _send(self, job: Job, tasks: list[Task], *, exclusive: bool = False, avoid: str | None = None,
              early_reducer: bool = False) -> bool:  # fmt: skip
        batch = Batch(next(self._batch_ids), self.executor_dir, job.dir, job.fn_key, self.state_address,
                      [t.spec() for t in tasks], job.fn)  # fmt: skip
        worker = self.backend.try_submit(batch, exclusive=exclusive, avoid=avoid)
        if worker is None:
            return False
        now = time.time()
        self._inflight[batch.batch_id] = InFlight(batch, {t.call_id: t for t in tasks}, worker, now, exclusive,
                                                  early_reducer)  # fmt: skip
        queue = self._per_worker.setdefault(worker, deque())
        if not queue:
            self._worker_event[worker] = now
        queue.append(batch.batch_id)
        if early_reducer:
            self._early_reducers += 1
        for t in tasks:
            t.copies += 1
            f = t.future
            f.state = RUNNING
            f.stats.setdefault("host_submit_tstamp", now)
        return True

    def _release_reducers(self) -> None:
        """Start held reducers: all at once when their mappers are done; before that (from
        spawn_reducer% on) one exclusive worker each, leaving at least one for the mappers."""
        self._jobs = [j for j in self._jobs if j.done < j.size or j.held]  # keep only live jobs
        for job in self._jobs:
            if job.kind != "reduce" or not job.held:
                continue
            maps = job.mappers
            assert maps is not None
            if maps.done >= maps.size:
                while job.held:
                    t = job.held.pop(0)
                    if not self._send(job, [t]):
                        job.held.insert(0, t)
                        break
                continue
            if maps.done < job.spawn_at or not self.backend.waiting_tasks_ok:
                continue
            while job.held and self._early_reducers < self.backend.slots - 1:
                t = job.held[0]
                if not self._send(job, [t], exclusive=True, early_reducer=True):
                    break
                job.held.pop(0)

    # -- outcomes (BackendSink), from backend threads ----------------------------------------------

    def outcomes(self, batch_id: int, outcomes: list[Outcome]) -> None:
        with self.changed:
            info = self._inflight.get(batch_id)
            if info is None:
                return
            self._worker_event[info.worker] = time.time()
            for o in outcomes:
                task = info.tasks.pop(o.call_id, None)
                if task is None:
                    continue
                task.copies -= 1
                self._apply(task, o)
            self.changed.notify_all()

    def batch_done(self, batch_id: int, lost: BaseException | None) -> None:
        with self.changed:
            info = self._inflight.pop(batch_id, None)
            if info is None:
                return
            queue = self._per_worker.get(info.worker)
            if queue is not None:
                try:
                    queue.remove(batch_id)
                except ValueError:
                    pass
                if not queue:
                    del self._per_worker[info.worker]
            self._worker_event[info.worker] = time.time()
            if info.early_reducer:
                self._early_reducers -= 1
            cancelled = info.worker in self._cancelled
            if cancelled and not queue:
                self._cancelled.discard(info.worker)
            for task in info.tasks.values():
                task.copies -= 1
                if cancelled and not task.finished and task.copies == 0:
                    self._ready.appendleft(task)  # queued behind a cancelled batch: not its failure
                elif not task.finished:
                    why = lost or WorkerLostError(f"batch {batch_id} ended without reporting call {task.call_id}")
                    self._failed(task, why, None)
            self._pump()
            self.changed.notify_all()

    def _apply(self, task: Task, o: Outcome) -> None:
        if task.finished:
            return  # the slower copy of a speculated call
        f = task.future
        if o.status == OK:
            task.finished = True
            job = task.job
            job.done += 1
            job.success[task.call_id] = True
            job.durations.append(o.end - o.start)
            self._check_finished(job)
            f.stats.update(worker=o.worker, worker_start_tstamp=o.start, worker_end_tstamp=o.end,
                           attempts=task.attempt + 1, speculative_copy=o.attempt != task.attempt or task.speculated)
            fetch = None
            if o.value_ref is not None:
                self.actions.append(("stored", (job, task.call_id, o.value_ref[1])))
                fetch = _bind(job.fetch, task.call_id)
            f._succeed(o.value, o.value_ref, fetch)
            if task.copies:
                self._cancel_losers(task)
            if job.kind == "map" and job.reducers is not None:
                self._release_reducers()
            return
        f.stats.update(worker=o.worker, worker_start_tstamp=o.start, worker_end_tstamp=o.end)
        assert o.error is not None
        type_name, message, tb, pickled = o.error
        cause = _unpickle_exception(pickled)
        exc: Exception = TaskError(f.id, type_name, message, wire.localize_traceback(tb), cause, attempts=task.attempt + 1)
        if cause is not None:
            exc.__cause__ = cause
        if task.job.aborted:  # a reducer told to stop: the mapper's failure is the news, not a retry
            exc = JobAbortedError(f"reducer {f.id} stopped: {task.job.aborted}")
        if o.status == STATE_FULL and task.spills < self.policy.spill_retries:
            if task.copies == 0:
                task.spills += 1
                task.attempt += 1
                self.spill_waiting.append(task)
                self.actions.append(("spill", None))
            return
        self._failed(task, exc, o)

    def _check_finished(self, job: Job) -> None:
        """Every call of the job is over: its inputs (and a shuffle's partitions) can go."""
        if job.done >= job.size and job.kind != "map":
            self.actions.append(("finished", job))

    def _cancel_losers(self, task: Task) -> None:
        """A speculated call finished: a batch left with nothing but finished calls is cancelled
        (a local worker is killed), so it holds up neither its worker nor what queues behind it."""
        cancel = getattr(self.backend, "cancel", None)
        if cancel is None:
            return
        for info in list(self._inflight.values()):
            mine = info.tasks.get(task.call_id) is task
            if mine and all(t.finished for t in info.tasks.values()) and cancel(info.batch.batch_id):
                self._cancelled.add(info.worker)

    def _failed(self, task: Task, exc: BaseException, o: Outcome | None) -> None:
        task.failures += 1
        if task.copies > 0:
            return  # another copy still runs; it decides
        if task.failures <= self.policy.retries and not task.job.aborted:
            task.attempt += 1
            self._ready.appendleft(task)  # retries go first: they hold up their job's end
            return
        if isinstance(exc, WorkerLostError) and task.failures > 1:
            exc = WorkerLostError(f"call {task.future.id}: {exc} (lost {task.failures} times)")
        self._give_up(task, exc)

    def _give_up(self, task: Task, exc: BaseException) -> None:
        """The call failed for good: its future holds `exc`; a failed mapper stops its reducers."""
        task.finished = True
        task.future.stats["attempts"] = task.attempt + 1  # as a success records it (job_summary)
        task.future._fail(exc)
        job = task.job
        job.done += 1
        self._check_finished(job)
        if job.kind == "map" and job.reducers is not None and not job.aborted:
            job.aborted = f"mapper {task.call_id} failed: {exc}".splitlines()[0][:500]
            self.actions.append(("abort", job))
            reducers = job.reducers
            reducers.aborted = job.aborted
            for r in reducers.held:
                r.finished = True
                r.future._fail(JobAbortedError(f"reducer {r.future.id} not run: {job.aborted}"))
                reducers.done += 1
            reducers.held.clear()
            self._check_finished(reducers)

    # -- stragglers -------------------------------------------------------------------------------

    def speculate(self) -> int:
        """Start a second copy of calls running far longer than their job's median; returns how many."""
        if not self.policy.speculation:
            return 0
        p = self.policy
        started = 0
        now = time.time()
        with self.changed:
            if self._ready:
                return 0  # work is waiting: a copy would take a worker from it (Spark waits too)
            for worker, queue in list(self._per_worker.items()):
                info = self._inflight.get(queue[0]) if queue else None
                if info is None or not info.tasks or info.batch.tasks[0].kind == "reduce":
                    continue
                job = info.tasks[next(iter(info.tasks))].job
                if job.done < p.speculation_quantile * job.size or not job.durations:
                    continue
                running_for = now - max(info.sent, self._worker_event.get(worker, info.sent))
                if running_for < max(p.speculation_min_s, p.speculation_multiplier * statistics.median(job.durations)):
                    continue
                # The worker runs a batch in order: the first unreported call is the straggler,
                # and the rest of its batch waits behind it, so all of them get a copy.
                tasks = [t for t in info.tasks.values() if not (t.speculated or t.finished)]
                if tasks and self._send(job, tasks, exclusive=True, avoid=worker):  # an idle worker only
                    for t in tasks:
                        t.speculated = True
                    started += len(tasks)
        return started

    # -- timeouts -------------------------------------------------------------------------------

    def enforce_timeouts(self) -> int:
        """Fail each call running longer than its job's timeout, and stop its batch (a local
        worker is killed, a Ray task cancelled) so the calls behind it run again elsewhere.
        A backend that cannot cancel (standalone) runs the call to its end; its result is
        dropped. Returns how many calls timed out."""
        cancel = getattr(self.backend, "cancel", None)
        expired = 0
        now = time.time()
        with self.changed:
            for worker, queue in list(self._per_worker.items()):
                info = self._inflight.get(queue[0]) if queue else None
                if info is None or info.expired:
                    continue
                running = next((t for t in info.tasks.values() if not t.finished), None)
                if running is None or running.job.timeout is None:
                    continue
                # A worker reports each call within FLUSH_S of its end, so its latest report
                # (or the batch's start) is when the running call began.
                running_for = now - max(info.sent, self._worker_event.get(worker, info.sent))
                if running_for <= running.job.timeout:
                    continue
                f = running.future
                self._give_up(running, CallTimeoutError(
                    f"call {f.id} ran longer than its timeout of {running.job.timeout:g} s"))  # fmt: skip
                expired += 1
                info.expired = True
                if cancel is not None and cancel(info.batch.batch_id):
                    self._cancelled.add(worker)  # the calls queued behind it run again
                if running.copies > 1:
                    self._cancel_losers(running)  # a speculative copy of it elsewhere
            if expired:
                self.changed.notify_all()
        return expired

    # -- spills ---------------------------------------------------------------------------------

    def resume_after_spill(self) -> None:
        with self.changed:
            waiting, self.spill_waiting = self.spill_waiting, []
            self._ready.extendleft(reversed(waiting))
            self._pump()

    def fail_waiting_spills(self, exc: BaseException) -> None:
        with self.changed:
            waiting, self.spill_waiting = self.spill_waiting, []
            for t in waiting:
                t.spills = self.policy.spill_retries
                self._failed(t, exc, None)
            self._pump()
            self.changed.notify_all()

    # -- closing --------------------------------------------------------------------------------

    def close(self, exc: BaseException) -> None:
        """Fail every call that has not finished (the executor is closing)."""
        with self.changed:
            self.closed = True
            tasks = list(self._ready) + self.spill_waiting
            for job in self._jobs:
                tasks += job.held
            for info in self._inflight.values():
                tasks += info.tasks.values()
            for t in tasks:
                if not t.finished:
                    t.finished = True
                    t.future._fail(exc)
            self._ready.clear()
            self._inflight.clear()
            self.changed.notify_all()

    def busy(self) -> bool:
        with self.changed:
            return bool(self._ready or self._inflight or self.spill_waiting or any(j.held for j in self._jobs))


def _bind(fetch: Callable[[int, tuple[str, int]], bytes], call_id: int) -> Callable[[tuple[str, int]], bytes]:
    return lambda ref: fetch(call_id, ref)


def _unpickle_exception(data: bytes | None) -> BaseException | None:
    if data is None:
        return None
    try:
        exc = cloudpickle.loads(data)
    except Exception:  # noqa: BLE001 - the text and traceback still reach the caller
        return None
    return exc if isinstance(exc, BaseException) else None
