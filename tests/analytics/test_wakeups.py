"""Calls waiting for a worker are always woken: an early reducer never takes the worker its own
mappers wait for, a worker that joins (a replacement done starting) takes the waiting calls, and
the monitor's backstop sends what waits even when no event says so. The scheduler is driven
here by a backend that records what it is given, so each interleaving is exact."""

from __future__ import annotations

import threading

from taureau.analytics import wire
from taureau.analytics.backends.local import LocalBackend
from taureau.analytics.calls import FAILED, Calls
from taureau.analytics.scheduler import Job, Policy, Scheduler


class RecordingBackend:
    """Two workers taking two batches each (the local backend's depth), of which only those
    in `ready` take any; outcomes reported as the local backend does."""

    name = "recording"
    slots = 2
    waiting_tasks_ok = True
    streams_outcomes = True

    def __init__(self, ready: set[str]) -> None:
        self.ready = ready
        self.queued: dict[str, list[int]] = {"a": [], "b": []}
        self.exclusive: set[str] = set()
        self.sent: list[tuple[str, list[int], str, bool]] = []  # (kind, call ids, worker, exclusive)

    def start(self, sink, state_address):
        pass

    def try_submit(self, batch, *, exclusive=False, avoid=None, short=False):
        free = [w for w in sorted(self.ready) if w not in self.exclusive and w != avoid
                and len(self.queued[w]) < 2 and not (exclusive and self.queued[w])]  # fmt: skip
        if not free:
            return None
        w = min(free, key=lambda w: len(self.queued[w]))
        self.queued[w].append(batch.batch_id)
        if exclusive:
            self.exclusive.add(w)
        self.sent.append((batch.kind, list(batch.call_ids), w, exclusive))
        return w

    def report_all(self, scheduler: Scheduler, worker: str) -> None:
        """Every batch queued on `worker` ends, their outcomes in one message (a batch's
        outcomes held for the next one's): the worker is idle before the first is applied."""
        done, self.queued[worker] = self.queued[worker], []
        self.exclusive.discard(worker)
        for batch_id in done:
            scheduler.outcomes(wire.Group(batch_id, 0, worker, 1.0, [2.0], bytes([wire.VALUE]), [1]))
        for batch_id in done:
            scheduler.batch_done(batch_id, None)

    def close(self):
        pass


def _calls(job_id: str, size: int) -> Calls:
    return Calls("x", job_id, size, lambda i, ref: b"", lambda f, timeout: None)


def _map_reduce(scheduler: Scheduler, mappers: int) -> tuple[Job, Job]:
    """A map_reduce as Executor.map_reduce submits it: one mapper a batch, reducers from 20%."""
    maps = Job("M000", "/d", "fn-M000", "map", mappers, 1, _calls("M000", mappers), wire.SCALARS,
               list(range(mappers)), extra=(1, False))  # fmt: skip
    reduce = Job("R001", "/d", "fn-R001", "reduce", 1, 1, _calls("R001", 1), wire.PICKLED, [b""],
                 extras=[(0, mappers, False)])  # fmt: skip
    reduce.mappers, maps.reducers, reduce.spawn_at = maps, reduce, 1
    scheduler.submit(reduce)
    scheduler.submit(maps)
    return maps, reduce


def test_an_early_reducer_does_not_take_the_worker_its_mappers_wait_for():
    # Worker b is still starting (a replacement): a alone runs the job.
    backend = RecordingBackend(ready={"a"})
    scheduler = Scheduler(backend, Policy(speculation=False), "addr", "/analytics/x")
    maps, reduce = _map_reduce(scheduler, 4)
    assert backend.sent == [("map", [0], "a", False), ("map", [1], "a", False)]
    # Mappers 0 and 1 report together: a is idle while mappers 2 and 3 still wait for it.
    # Given to a reducer (which waits for them), it would never run them.
    backend.report_all(scheduler, "a")
    assert backend.sent[2:] == [("map", [2], "a", False), ("map", [3], "a", False)]
    backend.report_all(scheduler, "a")
    assert maps.done == 4
    assert backend.sent[4:] == [("reduce", [0], "a", True)]  # the mappers were all out: it may wait
    backend.report_all(scheduler, "a")
    assert reduce.done == 1 and not scheduler.busy()


def test_a_worker_that_joins_takes_the_calls_waiting_for_one():
    backend = RecordingBackend(ready=set())  # no worker ready yet
    scheduler = Scheduler(backend, Policy(speculation=False), "addr", "/analytics/x")
    job = Job("A000", "/d", "fn-A000", "call", 1, 1, _calls("A000", 1), wire.SCALARS, [7])
    scheduler.submit(job)
    assert backend.sent == []
    backend.ready.add("b")
    scheduler.worker_joined()  # no batch was in flight: this is the only news
    assert backend.sent == [("call", [0], "b", False)]


def test_the_monitors_backstop_sends_what_waits_without_any_news():
    backend = RecordingBackend(ready=set())
    scheduler = Scheduler(backend, Policy(speculation=False), "addr", "/analytics/x")
    job = Job("A000", "/d", "fn-A000", "call", 1, 1, _calls("A000", 1), wire.SCALARS, [7])
    scheduler.submit(job)
    backend.ready.add("a")  # room appeared, and nothing said so
    scheduler.pump_waiting()
    assert backend.sent == [("call", [0], "a", False)]
    scheduler.pump_waiting()  # nothing waits: nothing more is sent
    assert len(backend.sent) == 1


def test_a_local_replacement_worker_says_it_joined(ex):
    joined = threading.Event()

    class Sink:
        def outcomes(self, group):
            pass

        def batch_done(self, batch_id, lost):
            pass

        def worker_joined(self):
            joined.set()

    backend = LocalBackend(workers=1)
    backend.start(Sink(), ex.state_address)
    try:
        assert not joined.is_set()  # the first workers are ready before start returns
        (_, pid), = backend.workers()
        backend._workers[0].proc.kill()
        # A replacement starts (an interpreter and the runner's imports); bounded, not a sleep.
        assert joined.wait(60), "the replacement never reported itself ready"
        assert pid not in [p for _, p in backend.workers()]
    finally:
        backend.close()


def test_nothing_is_sent_once_the_scheduler_is_closed():
    backend = RecordingBackend(ready=set())
    scheduler = Scheduler(backend, Policy(speculation=False), "addr", "/analytics/x")
    _, reduce = _map_reduce(scheduler, 2)
    scheduler.close(RuntimeError("closing"))  # every call failed, the mappers' too
    backend.ready.add("a")
    scheduler.worker_joined()
    scheduler.pump_waiting()
    assert backend.sent == [] and reduce.calls.status == bytearray([FAILED])
