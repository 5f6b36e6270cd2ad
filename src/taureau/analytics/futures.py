"""Futures of calls, as Lithops' ResponseFuture: `done`, `success`, `error`, `result()`, `stats`."""

from __future__ import annotations

import itertools
from typing import Any

from taureau.analytics.calls import FAILED, RUNNING_OR_PENDING, SUCCEEDED, Calls

PENDING, RUNNING, SUCCESS, ERROR = "pending", "running", "success", "error"


class ResponseFuture:
    """The outcome of one call: a view of its row in the job's columns (calls.Calls). Results
    are unpickled on first `result()`, and fetched from the state store then when they were
    too large to travel inline."""

    __slots__ = ("calls", "call_id")

    def __init__(self, calls: Calls, call_id: int) -> None:
        self.calls = calls
        self.call_id = call_id

    @property
    def executor_id(self) -> str:
        return self.calls.executor_id

    @property
    def job_id(self) -> str:
        return self.calls.job_id

    @property
    def id(self) -> str:
        return f"{self.calls.job_id}/{self.call_id:05d}"

    @property
    def state(self) -> str:
        status = self.calls.status[self.call_id]
        if status == SUCCEEDED:
            return SUCCESS
        if status == FAILED:
            return ERROR
        return RUNNING if self.calls.submitted[self.call_id] else PENDING

    @property
    def stats(self) -> dict[str, Any]:
        return self.calls.stats(self.call_id)

    @property
    def done(self) -> bool:
        return self.calls.status[self.call_id] != RUNNING_OR_PENDING

    ready = done

    @property
    def success(self) -> bool:
        return self.calls.status[self.call_id] == SUCCEEDED

    @property
    def error(self) -> bool:
        return self.calls.status[self.call_id] == FAILED

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def _loaded(self) -> bool:
        return self.calls.loaded(self.call_id)

    def exception(self) -> BaseException | None:
        return self.calls.errors.get(self.call_id)

    def result(self, timeout: float | None = None, throw_except: bool = True) -> Any:
        """The call's value; raises its TaskError (or WorkerLostError...) unless throw_except is False."""
        calls, i = self.calls, self.call_id
        if calls.status[i] == RUNNING_OR_PENDING:
            calls.waiter(self, timeout)
        if calls.status[i] == FAILED:
            if throw_except:
                raise calls.errors[i]
            return None
        return calls.value(i)

    def __repr__(self) -> str:
        return f"<ResponseFuture {self.id} {self.state}>"


class FuturesList(list):
    """A list of futures as map() and map_reduce() return it. `merge` tells get_result to fold
    the values of map_reduce(reduce_by_key=True)'s reducers (one dict per partition) into one.

    A job's own list makes its futures on first use: get_result(map(...)) reads the job's
    columns and never needs them, and making a thousand objects costs more than running a
    thousand no-op calls. Every list operation below makes them first (`fill`)."""

    merge: bool = False
    executor: Any = None
    calls: Calls | None = None  # set when the list is every future of one job, in order (fast paths)
    _filled: bool = True

    @classmethod
    def of_job(cls, calls: Calls) -> FuturesList:
        fs = cls()
        fs.calls, fs._filled = calls, False
        return fs

    def fill(self) -> FuturesList:
        """Make the futures of `calls`, one per call in order (once)."""
        if not self._filled:
            self._filled = True
            assert self.calls is not None
            size = self.calls.size
            list.extend(self, map(ResponseFuture, itertools.repeat(self.calls, size), range(size)))
        return self

    def unchanged_job(self) -> Calls | None:
        """The job's columns while the list is still exactly its futures."""
        if self.calls is not None and (not self._filled or list.__len__(self) == self.calls.size):
            return self.calls
        return None

    def __radd__(self, other: Any) -> list[Any]:
        """`[f] + fs`: list's own + would read this list's storage before it is filled."""
        return list(other) + list(self.fill())

    def get_result(self, **kwargs: Any) -> Any:
        return self.executor.get_result(self, **kwargs)

    def wait(self, **kwargs: Any) -> Any:
        return self.executor.wait(self, **kwargs)


def _filling(name: str) -> Any:
    method = getattr(list, name)

    def filled(self: FuturesList, *args: Any, **kwargs: Any) -> Any:
        args = tuple(a.fill() if isinstance(a, FuturesList) else a for a in args)  # `fs + fs.map_futures`
        return method(self.fill(), *args, **kwargs)

    filled.__name__ = name
    return filled


# Every list method that reads or changes the items (a list subclass's C code would see the
# empty list otherwise: its own methods, for loops, len, comparisons, +, pickling).
for _name in ("__iter__", "__len__", "__getitem__", "__setitem__", "__delitem__", "__contains__", "__reversed__",
              "__add__", "__iadd__", "__mul__", "__imul__", "__rmul__", "__eq__", "__ne__", "__lt__", "__le__",
              "__gt__", "__ge__", "__repr__", "__reduce_ex__", "append", "extend", "insert", "pop", "remove",
              "index", "count", "sort", "reverse", "copy", "clear"):  # fmt: skip
    setattr(FuturesList, _name, _filling(_name))


def summarize(job_id: str, kind: str, futures: list[ResponseFuture]) -> dict[str, Any]:
    """A job's row of Executor.job_summary(), from its futures' stats."""
    stats = [f.stats for f in futures]
    ran = [st for st in stats if "worker_end_tstamp" in st]
    submitted = min((st["host_submit_tstamp"] for st in stats if "host_submit_tstamp" in st), default=None)
    finished = max((st["worker_end_tstamp"] for st in ran), default=None)
    durations = [st["worker_end_tstamp"] - st["worker_start_tstamp"] for st in ran]
    return {
        "job_id": job_id, "kind": kind, "calls": len(futures), "done": sum(f.done for f in futures),
        "failed": sum(f.error for f in futures), "retried": sum(st.get("attempts", 1) > 1 for st in stats),
        "speculative": sum(bool(st.get("speculative_copy")) for st in stats), "submitted": submitted,
        "finished": finished, "wall_s": None if submitted is None or finished is None else finished - submitted,
        "mean_call_s": sum(durations) / len(durations) if durations else None,
    }  # fmt: skip
