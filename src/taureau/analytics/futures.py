"""Futures of calls, as Lithops' ResponseFuture: `done`, `success`, `error`, `result()`, `stats`."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

PENDING, RUNNING, SUCCESS, ERROR = "pending", "running", "success", "error"


class ResponseFuture:
    """The outcome of one call. Results are unpickled on first `result()`, and fetched from the
    state store then when they were too large to travel inline."""

    __slots__ = ("executor_id", "job_id", "call_id", "state", "stats", "_raw", "_ref", "_value", "_loaded",
                 "_exception", "_fetch", "_waiter")  # fmt: skip

    def __init__(self, executor_id: str, job_id: str, call_id: int, waiter: Callable[[ResponseFuture, float | None], None]) -> None:  # fmt: skip
        self.executor_id = executor_id
        self.job_id = job_id
        self.call_id = call_id
        self.state = PENDING
        self.stats: dict[str, Any] = {}
        self._raw: bytes | None = None
        self._ref: tuple[str, int] | None = None
        self._value: Any = None
        self._loaded = False
        self._exception: BaseException | None = None
        self._fetch: Callable[[tuple[str, int]], bytes] | None = None
        self._waiter = waiter

    @property
    def id(self) -> str:
        return f"{self.job_id}/{self.call_id:05d}"

    @property
    def done(self) -> bool:
        return self.state in (SUCCESS, ERROR)

    ready = done

    @property
    def success(self) -> bool:
        return self.state == SUCCESS

    @property
    def error(self) -> bool:
        return self.state == ERROR

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def exception(self) -> BaseException | None:
        return self._exception

    def result(self, timeout: float | None = None, throw_except: bool = True) -> Any:
        """The call's value; raises its TaskError (or WorkerLostError...) unless throw_except is False."""
        if not self.done:
            self._waiter(self, timeout)
        if self.state == ERROR:
            if throw_except:
                assert self._exception is not None
                raise self._exception
            return None
        if not self._loaded:
            raw = self._raw
            if raw is None:
                assert self._ref is not None and self._fetch is not None
                raw = self._fetch(self._ref)
            self._value = pickle.loads(raw)
            self._raw = None  # the object is kept; its pickle is not needed twice
            self._loaded = True
        return self._value

    # -- set by the scheduler ---------------------------------------------------------------

    def _succeed(self, raw: bytes | None, ref: tuple[str, int] | None,
                 fetch: Callable[[tuple[str, int]], bytes] | None) -> None:  # fmt: skip
        self._raw, self._ref, self._fetch = raw, ref, fetch
        self.state = SUCCESS

    def _fail(self, exc: BaseException) -> None:
        self._exception = exc
        self.state = ERROR

    def __repr__(self) -> str:
        return f"<ResponseFuture {self.id} {self.state}>"


class FuturesList(list):
    """A list of futures as map() and map_reduce() return it. `merge` tells get_result to fold
    the values of map_reduce(reduce_by_key=True)'s reducers (one dict per partition) into one."""

    merge: bool = False
    executor: Any = None

    def get_result(self, **kwargs: Any) -> Any:
        return self.executor.get_result(self, **kwargs)

    def wait(self, **kwargs: Any) -> Any:
        return self.executor.wait(self, **kwargs)


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
