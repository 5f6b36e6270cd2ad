"""A job's calls as columns: status, value, timings and worker of every call of one job.

The scheduler writes a reported group of calls with a few slice assignments (the common
case: consecutive calls, all returning small values), and futures are views of one row, so a
call costs no Python object of its own until someone asks for its future's details."""

from __future__ import annotations

import pickle
from array import array
from collections.abc import Callable
from typing import Any

RUNNING_OR_PENDING, SUCCEEDED, FAILED = 0, 1, 2
OK_BYTE = bytes([SUCCEEDED])


def _zeros(n: int) -> array:
    return array("d", bytes(8 * n))


class Calls:
    """Rows of one job. `status` says which are over; the other columns hold meaning only
    for rows that ran (their worker is set) or are over."""

    __slots__ = ("executor_id", "job_id", "size", "status", "values", "raws", "refs", "errors", "submitted",
                 "starts", "ends", "workers", "attempt", "speculative", "done", "fetch", "waiter")  # fmt: skip

    def __init__(self, executor_id: str, job_id: str, size: int, fetch: Callable[[int, tuple[str, int]], bytes],
                 waiter: Callable[[Any, float | None], None]) -> None:  # fmt: skip
        self.executor_id = executor_id
        self.job_id = job_id
        self.size = size
        self.status = bytearray(size)
        self.values: list[Any] = [None] * size  # loaded values (small scalars arrive loaded)
        self.raws: dict[int, bytes] = {}  # pickled values not unpickled yet (on first result())
        self.refs: dict[int, tuple[str, int]] = {}  # values kept in the state store: (key, size)
        self.errors: dict[int, BaseException] = {}
        self.submitted = _zeros(size)  # when the call was first sent (0: not yet)
        self.starts = _zeros(size)
        self.ends = _zeros(size)
        self.workers: list[str | None] = [None] * size
        self.attempt = [0] * size  # the current attempt (0: the first)
        self.speculative: set[int] = set()  # calls whose result came from a speculative copy
        self.done = 0
        self.fetch = fetch  # (call id, ref) -> pickled value from the state store
        self.waiter = waiter  # (future, timeout): returns once the future is done, or raises TimeoutError

    def pending_in(self, start: int, stop: int) -> int:
        """Rows in [start, stop) not over yet."""
        return self.status.count(RUNNING_OR_PENDING, start, stop)

    def value(self, i: int) -> Any:
        """Row i's value, unpickled (and fetched from the state store) on first use."""
        raw = self.raws.pop(i, None)
        if raw is None and i in self.refs:
            raw = self.fetch(i, self.refs[i])
            del self.refs[i]
        if raw is not None:
            self.values[i] = pickle.loads(raw)  # the object is kept; its pickle is not needed twice
        return self.values[i]

    def loaded(self, i: int) -> bool:
        return self.status[i] == SUCCEEDED and i not in self.raws and i not in self.refs

    def stats(self, i: int) -> dict[str, Any]:
        """Lithops' future stats of row i: submit, start and end time, worker, attempts and
        whether a speculative copy won (the last two once it is over)."""
        st: dict[str, Any] = {}
        if self.submitted[i]:
            st["host_submit_tstamp"] = self.submitted[i]
        worker = self.workers[i]
        if worker is not None:
            st.update(worker=worker, worker_start_tstamp=self.starts[i], worker_end_tstamp=self.ends[i])
        if self.status[i] == SUCCEEDED:
            st.update(attempts=self.attempt[i] + 1, speculative_copy=i in self.speculative)
        elif self.status[i] == FAILED:
            st["attempts"] = self.attempt[i] + 1
        return st
