"""Futures of calls, as Lithops' ResponseFuture: `done`, `success`, `error`, `result()`, `stats`."""

from __future__ import annotations

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
    the values of map_reduce(reduce_by_key=True)'s reducers (one dict per partition) into one."""

    merge: bool = False
    executor: Any = None
    calls: Calls | None = None  # set when the list is every future of one job, in order (fast paths)

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
