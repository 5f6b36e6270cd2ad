"""Worker side of every backend: run a batch of tasks, report one outcome per task.

The function is fetched from the job's data table once per worker and cached; results too
large to inline are written to the job's results table; a result that the state pool cannot
hold is reported as STATE_FULL, so the driver can spill and run the task again."""

from __future__ import annotations

import os
import pickle
import socket
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import cloudpickle

from taureau.analytics import shuffle, wire
from taureau.analytics.space import (
    JobSpace,
    client_for,
    get_blob,
    open_unrenewed,
    put_blob,
    results_path,
    segment_of,
    set_current,
)
from taureau.analytics.wire import ERROR, OK, STATE_FULL, Batch, Outcome, TaskSpec
from taureau.common import errors

FLUSH_S = 0.005  # outcomes wait at most this long for others to share a message
CACHE_FUNCTIONS = 16
CACHE_TABLES = 256


class Runner:
    """Runs batches in one worker process (a pool worker, a function instance or a Ray worker)."""

    def __init__(self, worker: str | None = None) -> None:
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._functions: OrderedDict[tuple[str, str], tuple[Any, Any, dict[str, str] | None]] = OrderedDict()
        self._tables: OrderedDict[str, Any] = OrderedDict()
        self._spaces: dict[str, JobSpace] = {}

    def run_batch(self, batch: Batch, emit: Callable[[list[Outcome]], None]) -> None:
        """Run every task of `batch`, calling `emit` with outcomes as they accumulate."""
        pending: list[Outcome] = []
        size = 0
        first = 0.0
        for task in batch.tasks:
            o = self.run_task(batch, task)
            if not pending:
                first = o.end
            pending.append(o)
            size += len(o.value or b"") + (len(o.error[2]) if o.error else 0)
            if size > wire.OUTCOMES_BYTES_MAX // 2 or o.end - first > FLUSH_S:
                emit(pending)
                pending, size = [], 0
        if pending:
            emit(pending)

    def run_task(self, batch: Batch, task: TaskSpec) -> Outcome:
        start = time.time()
        client = client_for(batch.state_address)
        jdir = batch.job_dir
        try:
            fn, partitioner, env = self._function(client, jdir, batch.fn_key)
            raw = task.args if task.args is not None else get_blob(self._table(client, f"{jdir}/data"), task.args_key or "")
            args, kwargs = pickle.loads(raw)
            token = set_current(self._space(client, batch.executor_dir))
            saved = _set_env(env) if env else None
            try:
                value = self._call(client, jdir, task, fn, partitioner, args, kwargs)
            finally:
                token.var.reset(token)
                if saved is not None:
                    _restore_env(saved)
            data = cloudpickle.dumps(value, protocol=wire.PROTOCOL)
            if len(data) <= wire.INLINE_RESULT_MAX:
                return Outcome(batch.batch_id, task.call_id, task.attempt, OK, data, None, None, self.worker, start, time.time())
            key = f"{task.call_id}"
            put_blob(self._table(client, results_path(jdir, segment_of(task.call_id))), key, data)
            return Outcome(batch.batch_id, task.call_id, task.attempt, OK, None, (key, len(data)), None, self.worker,
                           start, time.time())  # fmt: skip
        except errors.OutOfMemoryError as exc:
            return self._failed(batch, task, STATE_FULL, exc, start)
        except BaseException as exc:  # noqa: BLE001 - whatever user code raises is the task's outcome
            if isinstance(exc, KeyboardInterrupt):
                raise
            return self._failed(batch, task, ERROR, exc, start)

    def _call(self, client: Any, jdir: str, task: TaskSpec, fn: Any, partitioner: Any, args: tuple,
              kwargs: dict) -> Any:  # fmt: skip
        if task.kind == "reduce":
            partition, mappers, by_key = task.extra
            return shuffle.reduce_partition(client, jdir, fn, partition, mappers, by_key)
        value = fn(*args, **kwargs)
        if task.kind == "map":
            partitions, by_key = task.extra
            return shuffle.write_map_output(client, jdir, task.call_id, value, partitions, by_key, partitioner)
        return value

    def _failed(self, batch: Batch, task: TaskSpec, status: int, exc: BaseException, start: float) -> Outcome:
        tb = "".join(traceback.format_exception(exc))
        if len(tb) > wire.TRACEBACK_MAX:
            tb = "...\n" + tb[-wire.TRACEBACK_MAX :]
        pickled: bytes | None = None
        try:
            data = cloudpickle.dumps(exc, protocol=wire.PROTOCOL)
            pickled = data if len(data) <= wire.INLINE_RESULT_MAX else None
        except Exception:  # noqa: BLE001 - an exception that does not pickle still has its text
            pass
        error = (type(exc).__qualname__, str(exc)[:4096], tb, pickled)
        return Outcome(batch.batch_id, task.call_id, task.attempt, status, None, None, error, self.worker, start,
                       time.time())  # fmt: skip

    def _function(self, client: Any, jdir: str, fn_key: str) -> tuple[Any, Any, dict[str, str] | None]:
        key = (jdir, fn_key)
        cached = self._functions.get(key)
        if cached is not None:
            self._functions.move_to_end(key)
            return cached
        loaded = pickle.loads(get_blob(self._table(client, f"{jdir}/data"), fn_key))
        self._functions[key] = loaded
        if len(self._functions) > CACHE_FUNCTIONS:
            self._functions.popitem(last=False)
        return loaded

    def _table(self, client: Any, path: str) -> Any:
        t = self._tables.get(path)
        if t is None:
            t = self._tables[path] = open_unrenewed(client, client.open_or_create_hash_table, path)
            if len(self._tables) > CACHE_TABLES:
                self._tables.popitem(last=False)
        return t

    def _space(self, client: Any, executor_dir: str) -> JobSpace:
        space = self._spaces.get(executor_dir)
        if space is None:
            if len(self._spaces) > 16:
                self._spaces.clear()
            space = self._spaces[executor_dir] = JobSpace(client, f"{executor_dir}/shared", renew=False)
        return space


def _set_env(env: dict[str, str]) -> dict[str, str | None]:
    """Set a job's extra_env for one call; returns what to put back (a worker runs one call at
    a time, so the next call, maybe of another job, sees the worker's own environment)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    return saved


def _restore_env(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


_runner: Runner | None = None


def run_batch_bytes(data: bytes) -> bytes:
    """One batch in, all its outcomes out: the entry point of request/response backends."""
    global _runner
    if _runner is None:
        _runner = Runner()
    outcomes: list[Outcome] = []
    _runner.run_batch(wire.decode_batch(data), outcomes.extend)
    return wire.encode_outcomes(outcomes)
