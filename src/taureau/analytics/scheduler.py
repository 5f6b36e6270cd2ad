"""The driver's scheduler: batches ready tasks onto a backend, turns outcomes into futures,
retries failures and lost workers, speculates on stragglers, holds reducers until their
mappers allow them to start. One lock guards everything here (the `Condition` waiters use)."""

from __future__ import annotations

import contextlib
import itertools
import operator
import statistics
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from taureau.analytics import wire
from taureau.analytics.backends.base import Backend
from taureau.analytics.calls import FAILED, OK_BYTE, SUCCEEDED, Calls
from taureau.analytics.errors import CallTimeoutError, JobAbortedError, TaskError, WorkerLostError
from taureau.analytics.wire import Batch, Group


@dataclass(slots=True)
class Policy:
    retries: int = 2  # a failed or lost call runs at most 1 + retries times
    speculation: bool = True
    speculation_quantile: float = 0.75  # Spark's defaults: start once 75% of a job is done,
    speculation_multiplier: float = 1.5  # for calls running 1.5x the median duration,
    speculation_min_s: float = 0.1  # and at least this long
    spill_retries: int = 3  # a call whose result found the pool full runs again after a spill


SHORT_BATCH_S = 0.005  # a batch expected to run shorter than this may queue deeper on a worker
Ids = range | list[int]  # call ids of a job: a range while consecutive (no per-call objects)


@dataclass(eq=False, slots=True)
class Job:
    id: str
    dir: str
    fn_key: str
    kind: str  # "call", "map" (map side of map_reduce) or "reduce"
    size: int
    chunk: int  # calls per batch
    calls: Calls  # status, values and timings of every call (the futures' rows)
    mode: int = wire.SCALARS  # how `args` hold the arguments (wire.PICKLED or wire.SCALARS)
    args: list[Any] = field(default_factory=list)  # per call, as a batch carries them
    arg_keys: dict[int, str] = field(default_factory=dict)  # call id -> key of large arguments in state
    extra: Any = None  # per-kind builtins the same for every call
    extras: list[Any] | None = None  # or one per call (reducers)
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    reducers: Job | None = None  # for a map job: its reduce job
    mappers: Job | None = None  # for a reduce job: its map job
    spawn_at: int = 0  # mappers done before reducers may start waiting for the rest
    held: list[int] = field(default_factory=list)  # reducers not yet released
    aborted: str | None = None
    timeout: float | None = None  # seconds a call may run (Lithops' timeout); None: no limit
    fn: bytes | None = None  # the pickled function, sent in every batch when it is small
    has_data: bool = False  # its data table exists in state (a large function or argument)
    failures: dict[int, int] = field(default_factory=dict)  # call id -> failed or lost runs
    spills: dict[int, int] = field(default_factory=dict)  # call id -> runs refused by a full pool
    speculated: set[int] = field(default_factory=set)  # calls given a second copy

    @property
    def done(self) -> int:
        return self.calls.done


@dataclass(eq=False, slots=True)
class InFlight:
    batch: Batch
    job: Job
    ids: Ids  # the batch's calls, by position
    attempts: list[int]  # each call's attempt when sent
    worker: str
    sent: float
    exclusive: bool
    early_reducer: bool
    next_pos: int = 0  # positions before it are reported (workers run a batch in order)
    expired: bool = False  # a call of it timed out: the rest of it is not timed from that start

    def unreported(self) -> Ids:
        return self.ids[self.next_pos :]


def _take(column: list[Any], ids: Ids) -> list[Any]:
    if isinstance(ids, range):
        return column[ids.start : ids.stop]
    return [column[i] for i in ids]


class Scheduler:
    def __init__(self, backend: Backend, policy: Policy, state_address: str, executor_dir: str) -> None:
        self.backend = backend
        self.policy = policy
        self.state_address = state_address
        self.executor_dir = executor_dir
        self.changed = threading.Condition()
        self._ready: deque[tuple[Job, Ids]] = deque()
        self._inflight: dict[int, InFlight] = {}
        self._per_worker: dict[str, deque[int]] = {}  # batches in the order the worker runs them
        self._worker_event: dict[str, float] = {}  # last time a batch of the worker moved
        self._early_reducers = 0
        self._cancelled: set[str] = set()  # workers whose batches were cancelled (killed)
        self._batch_ids = itertools.count(1)
        self._jobs: list[Job] = []
        self.actions: deque[tuple[str, Any]] = deque()  # state work for the monitor thread
        self.spill_waiting: list[tuple[Job, int]] = []
        self.closed = False
        self._call_s: float | None = None  # recent seconds per call (a moving average over groups)

    @contextlib.contextmanager
    def _sending(self) -> Iterator[None]:
        """The lock, and then the batches accepted under it written out once it is released:
        a write under the lock would hold up the backend's threads reporting outcomes."""
        with self.changed:
            yield
        flush = getattr(self.backend, "flush", None)
        if flush is not None:
            flush()

    # -- submission ---------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._sending():
            self._jobs.append(job)
            if job.kind == "reduce":
                job.held.extend(range(job.size))
            else:
                self._ready.append((job, range(job.size)))
            self._pump()

    def _pump(self) -> None:
        """Send ready calls while the backend takes them. Called with the lock held."""
        ready = self._ready
        while ready and not self.closed:
            job, ids = ready.popleft()
            pending = job.calls.status
            if isinstance(ids, range):
                if job.calls.pending_in(ids.start, ids.stop) != len(ids):
                    ids = [i for i in ids if not pending[i]]
            else:
                ids = [i for i in ids if not pending[i]]
            if not ids:
                continue
            take = self._batch_size(job, ids)
            if not self._send(job, ids[:take]):
                ready.appendleft((job, ids))
                break
            if take < len(ids):
                ready.appendleft((job, ids[take:]))
        self._release_reducers()

    @staticmethod
    def _batch_size(job: Job, ids: Ids) -> int:
        """Calls of `ids` for the next batch: the job's chunk, cut before the inline arguments
        pass BATCH_BYTES_MAX (SCALARS are at most SCALAR_TEXT_MAX each: a chunk always fits)."""
        n = min(job.chunk, len(ids))
        if job.mode == wire.SCALARS:
            return n
        size = 0
        for k in range(n):
            size += len(job.args[ids[k]] or b"")
            if k and size > wire.BATCH_BYTES_MAX:
                return k
        return n

    def _send(self, job: Job, ids: Ids, *, exclusive: bool = False, avoid: str | None = None,
              early_reducer: bool = False) -> bool:  # fmt: skip
        keys = None
        if job.arg_keys:
            keys = {p: job.arg_keys[i] for p, i in enumerate(ids) if i in job.arg_keys} or None
        batch = Batch(next(self._batch_ids), self.executor_dir, job.dir, job.fn_key, self.state_address, job.kind,
                      ids, job.mode, _take(job.args, ids), keys, job.extra,
                      None if job.extras is None else _take(job.extras, ids), job.fn)  # fmt: skip
        short = self._call_s is not None and self._call_s * len(ids) < SHORT_BATCH_S
        worker = self.backend.try_submit(batch, exclusive=exclusive, avoid=avoid, short=short)
        if worker is None:
            return False
        now = time.time()
        calls = job.calls
        self._inflight[batch.batch_id] = InFlight(batch, job, ids, _take(calls.attempt, ids), worker, now,
                                                  exclusive, early_reducer)  # fmt: skip
        queue = self._per_worker.setdefault(worker, deque())
        if not queue:
            self._worker_event[worker] = now
        queue.append(batch.batch_id)
        if early_reducer:
            self._early_reducers += 1
        submitted = calls.submitted
        if isinstance(ids, range) and not submitted[ids.start]:
            submitted[ids.start : ids.stop] = array("d", [now]) * len(ids)  # a first dispatch
        else:
            for i in ids:
                if not submitted[i]:
                    submitted[i] = now
        return True

    def _release_reducers(self) -> None:
        """Start held reducers: all at once when their mappers are done; before that (from
        spawn_reducer% on) one exclusive worker each, leaving at least one for the mappers."""
        if self.closed:
            return  # close() failed every call: a held reducer's mappers look done, but are not
        self._jobs = [j for j in self._jobs if j.done < j.size or j.held]  # keep only live jobs
        for job in self._jobs:
            if job.kind != "reduce" or not job.held:
                continue
            maps = job.mappers
            assert maps is not None
            if maps.done >= maps.size:
                while job.held:
                    if not self._send(job, [job.held[0]]):
                        break
                    job.held.pop(0)
                continue
            if maps.done < job.spawn_at or not self.backend.waiting_tasks_ok:
                continue
            if any(j is maps for j, _ in self._ready):
                # Mappers wait for a worker: a reducer would take the worker they need and
                # then wait for them. (A group of outcomes ending a worker's last batches
                # leaves it idle here before batch_done hands it the next mappers; with the
                # other worker still starting, that was a job that never finished.)
                continue
            while job.held and self._early_reducers < self.backend.slots - 1:
                if not self._send(job, [job.held[0]], exclusive=True, early_reducer=True):
                    break
                job.held.pop(0)

    # -- outcomes (BackendSink), from backend threads ----------------------------------------------

    def outcomes(self, group: Group) -> None:
        with self._sending():
            info = self._inflight.get(group.batch_id)
            if info is None or group.pos < info.next_pos:
                return  # a lost batch's late news, or a repeat
            n = len(group.ends)
            info.next_pos = group.pos + n
            self._worker_event[info.worker] = time.time()
            job = info.job
            ids = info.ids[group.pos : group.pos + n]
            if not (isinstance(ids, range) and self._apply_plain(job, ids, group)):
                self._apply_each(info, ids, group)
                self._timed(group.ends[-1] - group.t0, n)
            self.changed.notify_all()

    def worker_joined(self) -> None:
        """A worker became ready (a replacement finished starting): nothing else wakes the
        calls that wait for a worker when no batch is in flight to end."""
        with self._sending():
            self._pump()
            self.changed.notify_all()

    def pump_waiting(self) -> None:
        """Send what waits for a worker, if anything does: the monitor's backstop, so a
        wake-up missed anywhere costs a tick rather than a job that never ends."""
        with self.changed:
            waiting = bool(self._ready) or any(j.held for j in self._jobs)
        if waiting:
            with self._sending():
                self._pump()

    def _timed(self, seconds: float, calls: int) -> None:
        per_call = seconds / calls
        self._call_s = per_call if self._call_s is None else 0.75 * self._call_s + 0.25 * per_call

    def _apply_plain(self, job: Job, ids: range, g: Group) -> bool:
        """The common case in a few slice assignments: consecutive calls, none over yet, none
        speculated, all returning small values. False (nothing done) for anything else."""
        n = len(ids)
        calls = job.calls
        a, b = ids.start, ids.stop
        if job.speculated or g.kinds.count(wire.VALUE) != n or calls.pending_in(a, b) != n:
            return False
        starts = [g.t0, *g.ends[:-1]]
        calls.values[a:b] = g.values
        calls.starts[a:b] = array("d", starts)
        calls.ends[a:b] = array("d", g.ends)
        calls.workers[a:b] = [g.worker] * n
        calls.status[a:b] = OK_BYTE * n
        calls.done += n
        job.durations.extend(map(operator.sub, g.ends, starts))
        self._timed(g.ends[-1] - g.t0, n)
        self._check_finished(job)
        if job.kind == "map" and job.reducers is not None:
            self._release_reducers()
        return True

    def _apply_each(self, info: InFlight, ids: Ids, g: Group) -> None:
        job, calls = info.job, info.job.calls
        start = g.t0
        for k, i in enumerate(ids):
            end = g.ends[k]
            kind, value = g.kinds[k], g.values[k]
            sent_attempt = info.attempts[g.pos + k]
            run_start, start = start, end
            if calls.status[i]:
                continue  # the slower copy of a speculated call, or a call that timed out
            calls.workers[i], calls.starts[i], calls.ends[i] = g.worker, run_start, end
            if kind <= wire.STORED:
                self._succeeded(job, i, kind, value, end - run_start, sent_attempt)
            else:
                self._errored(job, i, kind, value)

    def _succeeded(self, job: Job, i: int, kind: int, value: Any, duration: float, sent_attempt: int) -> None:
        calls = job.calls
        if kind == wire.VALUE:
            calls.values[i] = value
        elif kind == wire.PICKLED_VALUE:
            calls.raws[i] = value
        else:
            calls.refs[i] = value
            self.actions.append(("stored", (job, i, value[1])))
        if sent_attempt != calls.attempt[i] or i in job.speculated:
            calls.speculative.add(i)
        calls.status[i] = SUCCEEDED
        calls.done += 1
        job.durations.append(duration)
        self._check_finished(job)
        if i in job.speculated:
            self._cancel_losers(job, i)
        if job.kind == "map" and job.reducers is not None:
            self._release_reducers()

    def _errored(self, job: Job, i: int, kind: int, error: tuple[str, str, str, bytes | None]) -> None:
        type_name, message, tb, pickled = error
        calls = job.calls
        cause = _unpickle_exception(pickled)
        exc: Exception = TaskError(f"{job.id}/{i:05d}", type_name, message, wire.localize_traceback(tb), cause,
                                   attempts=calls.attempt[i] + 1)  # fmt: skip
        if cause is not None:
            exc.__cause__ = cause
        if job.aborted:  # a reducer told to stop: the mapper's failure is the news, not a retry
            exc = JobAbortedError(f"reducer {job.id}/{i:05d} stopped: {job.aborted}")
        if kind == wire.STATE_FULL and job.spills.get(i, 0) < self.policy.spill_retries:
            if self._copies(job, i) == 0:
                job.spills[i] = job.spills.get(i, 0) + 1
                calls.attempt[i] += 1
                self.spill_waiting.append((job, i))
                self.actions.append(("spill", None))
            return
        self._failed(job, i, exc)

    def _copies(self, job: Job, i: int) -> int:
        """Batches in flight that hold call i unreported. Only speculation makes a second copy
        (a retry goes out once no copy is left), so for other calls there is nothing to scan."""
        if i not in job.speculated:
            return 0
        return sum(1 for info in self._inflight.values() if info.job is job and i in info.unreported())

    def batch_done(self, batch_id: int, lost: BaseException | None) -> None:
        with self._sending():
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
            job, status = info.job, info.job.calls.status
            again = []
            for i in info.unreported():
                if status[i]:
                    continue
                if cancelled and self._copies(job, i) == 0:
                    again.append(i)  # queued behind a cancelled batch: not its failure
                else:
                    why = lost or WorkerLostError(f"batch {batch_id} ended without reporting call {i}")
                    self._failed(job, i, why)
            if again:
                self._ready.appendleft((job, again))
            self._pump()
            self.changed.notify_all()

    def _check_finished(self, job: Job) -> None:
        """Every call of the job is over: its inputs (and a shuffle's partitions) can go."""
        if job.done >= job.size and job.kind != "map":
            self.actions.append(("finished", job))

    def _cancel_losers(self, job: Job, i: int) -> None:
        """A speculated call finished: a batch left with nothing but finished calls is cancelled
        (a local worker is killed), so it holds up neither its worker nor what queues behind it."""
        cancel = getattr(self.backend, "cancel", None)
        if cancel is None:
            return
        status = job.calls.status
        for info in list(self._inflight.values()):
            left = info.unreported()
            if info.job is job and i in left and all(status[c] for c in left) and cancel(info.batch.batch_id):
                self._cancelled.add(info.worker)

    def _failed(self, job: Job, i: int, exc: BaseException) -> None:
        failures = job.failures[i] = job.failures.get(i, 0) + 1
        if self._copies(job, i) > 0:
            return  # another copy still runs; it decides
        if failures <= self.policy.retries and not job.aborted:
            job.calls.attempt[i] += 1
            self._ready.appendleft((job, [i]))  # retries go first: they hold up their job's end
            return
        if isinstance(exc, WorkerLostError) and failures > 1:
            exc = WorkerLostError(f"call {job.id}/{i:05d}: {exc} (lost {failures} times)")
        self._give_up(job, i, exc)

    def _give_up(self, job: Job, i: int, exc: BaseException) -> None:
        """The call failed for good: its future holds `exc`; a failed mapper stops its reducers."""
        calls = job.calls
        calls.errors[i] = exc
        calls.status[i] = FAILED
        calls.done += 1
        self._check_finished(job)
        if job.kind == "map" and job.reducers is not None and not job.aborted:
            job.aborted = f"mapper {i} failed: {exc}".splitlines()[0][:500]
            self.actions.append(("abort", job))
            reducers = job.reducers
            reducers.aborted = job.aborted
            for r in reducers.held:
                reducers.calls.errors[r] = JobAbortedError(f"reducer {reducers.id}/{r:05d} not run: {job.aborted}")
                reducers.calls.status[r] = FAILED
                reducers.calls.done += 1
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
        with self._sending():
            if self._ready:
                return 0  # work is waiting: a copy would take a worker from it (Spark waits too)
            for worker, queue in list(self._per_worker.items()):
                info = self._inflight.get(queue[0]) if queue else None
                if info is None or not info.unreported() or info.batch.kind == "reduce":
                    continue
                job = info.job
                if job.done < p.speculation_quantile * job.size or not job.durations:
                    continue
                running_for = now - max(info.sent, self._worker_event.get(worker, info.sent))
                if running_for < max(p.speculation_min_s, p.speculation_multiplier * statistics.median(job.durations)):
                    continue
                # The worker runs a batch in order: the first unreported call is the straggler,
                # and the rest of its batch waits behind it, so all of them get a copy.
                status = job.calls.status
                ids = [i for i in info.unreported() if not (i in job.speculated or status[i])]
                if ids and self._send(job, ids, exclusive=True, avoid=worker):  # an idle worker only
                    job.speculated.update(ids)
                    started += len(ids)
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
                if info is None or info.expired or info.job.timeout is None:
                    continue
                job, status, timeout = info.job, info.job.calls.status, info.job.timeout
                running = next((i for i in info.unreported() if not status[i]), None)
                if running is None:
                    continue
                # A worker reports each call within FLUSH_S of its end, so its latest report
                # (or the batch's start) is when the running call began.
                running_for = now - max(info.sent, self._worker_event.get(worker, info.sent))
                if running_for <= timeout:
                    continue
                copies = self._copies(job, running)
                self._give_up(job, running, CallTimeoutError(
                    f"call {job.id}/{running:05d} ran longer than its timeout of {timeout:g} s"))  # fmt: skip
                expired += 1
                info.expired = True
                if cancel is not None and cancel(info.batch.batch_id):
                    self._cancelled.add(worker)  # the calls queued behind it run again
                if copies > 1:
                    self._cancel_losers(job, running)  # a speculative copy of it elsewhere
            if expired:
                self.changed.notify_all()
        return expired

    # -- spills ---------------------------------------------------------------------------------

    def resume_after_spill(self) -> None:
        with self._sending():
            waiting, self.spill_waiting = self.spill_waiting, []
            self._ready.extendleft((job, [i]) for job, i in reversed(waiting))
            self._pump()

    def fail_waiting_spills(self, exc: BaseException) -> None:
        with self._sending():
            waiting, self.spill_waiting = self.spill_waiting, []
            for job, i in waiting:
                job.spills[i] = self.policy.spill_retries
                self._failed(job, i, exc)
            self._pump()
            self.changed.notify_all()

    # -- closing --------------------------------------------------------------------------------

    def close(self, exc: BaseException) -> None:
        """Fail every call that has not finished (the executor is closing)."""
        with self.changed:
            self.closed = True
            jobs = {job for job, _ in self._ready} | {job for job, _ in self.spill_waiting} | set(self._jobs)
            jobs |= {info.job for info in self._inflight.values()}
            for job in jobs:
                calls = job.calls
                for i in range(job.size):
                    if not calls.status[i]:
                        calls.errors[i] = exc
                        calls.status[i] = FAILED
                        calls.done += 1
            self._ready.clear()
            self._inflight.clear()
            self.changed.notify_all()

    def busy(self) -> bool:
        with self.changed:
            return bool(self._ready or self._inflight or self.spill_waiting or any(j.held for j in self._jobs))


def _unpickle_exception(data: bytes | None) -> BaseException | None:
    if data is None:
        return None
    try:
        exc = cloudpickle.loads(data)
    except Exception:  # noqa: BLE001 - the text and traceback still reach the caller
        return None
    return exc if isinstance(exc, BaseException) else None
