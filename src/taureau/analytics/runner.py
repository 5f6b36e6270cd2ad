"""Worker side of every backend: run a batch of tasks, report one outcome per task.

The function is fetched from the job's data table once per worker and cached; results too
large to inline are written to the job's results table; a result that the state pool cannot
hold is reported as STATE_FULL, so the driver can spill and run the task again."""

from __future__ import annotations

import os
import pickle
import socket
import threading
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


class Outbox:
    """Outcomes on their way to the driver, sent in groups (one message per FLUSH_S, or per half
    a message of bytes). With `background`, a thread sends a group once it is FLUSH_S old, so a
    finished call is reported while the next one runs, however long that takes."""

    def __init__(self, send: Callable[[list[Outcome]], None], *, background: bool) -> None:
        self._send = send
        self._cond = threading.Condition()
        self._pending: list[Outcome] = []
        self._size = 0
        self._first = 0.0
        self._broken = False
        if background:
            threading.Thread(target=self._flush_when_due, name="outcomes", daemon=True).start()

    def add(self, o: Outcome) -> None:
        with self._cond:
            now = time.monotonic()
            if not self._pending:
                self._first = now
                self._cond.notify()  # the flusher starts timing this group
            self._pending.append(o)
            self._size += len(o.value or b"") + (len(o.error[2]) if o.error else 0)
            if self._size > wire.OUTCOMES_BYTES_MAX // 2 or now - self._first > FLUSH_S:
                self._flush_locked()

    def flush(self) -> None:
        with self._cond:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending and not self._broken:
            group, self._pending, self._size = self._pending, [], 0
            self._send(group)

    def _flush_when_due(self) -> None:
        with self._cond:
            while not self._broken:
                if not self._pending:
                    self._cond.wait()
                    continue
                due = self._first + FLUSH_S - time.monotonic()
                if due > 0:
                    self._cond.wait(due)
                    continue
                try:
                    self._flush_locked()
                except OSError:
                    self._broken = True  # the driver hung up; the main thread finds out on its own send


class Runner:
    """Runs batches in one worker process (a pool worker, a function instance or a Ray worker)."""

    def __init__(self, worker: str | None = None) -> None:
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._functions: OrderedDict[tuple[str, str], tuple[Any, Any, dict[str, str] | None]] = OrderedDict()
        self._tables: OrderedDict[str, Any] = OrderedDict()
        self._spaces: dict[str, JobSpace] = {}

    def run_batch(self, batch: Batch, outbox: Outbox) -> None:
        """Run every task of `batch`, handing each outcome to `outbox`; flushed at the end.
        What is the same for every task (the client, the job's space) is looked up once."""
        client = client_for(batch.state_address)
        token = set_current(self._space(client, batch.executor_dir))
        try:
            for task in batch.tasks:
                outbox.add(self.run_task(client, batch, task))
        finally:
            token.var.reset(token)
        outbox.flush()

    def run_task(self, client: Any, batch: Batch, task: TaskSpec) -> Outcome:
        start = time.time()
        jdir = batch.job_dir
        try:
            fn, partitioner, env = self._function(client, batch)
            raw = task.args if task.args is not None else get_blob(self._table(client, f"{jdir}/data"), task.args_key or "")
            args, kwargs = pickle.loads(raw)
            saved = _set_env(env) if env else None
            try:
                value = self._call(client, jdir, task, fn, partitioner, args, kwargs)
            finally:
                if saved is not None:
                    _restore_env(saved)
            data = wire.dumps_result(value)
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

    def _function(self, client: Any, batch: Batch) -> tuple[Any, Any, dict[str, str] | None]:
        """The job's (function, partitioner, env): from the batch when it came inline, else from
        the job's data table; unpickled once per worker (an LRU of CACHE_FUNCTIONS)."""
        key = (batch.job_dir, batch.fn_key)
        cached = self._functions.get(key)
        if cached is not None:
            self._functions.move_to_end(key)
            return cached
        blob = batch.fn if batch.fn is not None else get_blob(self._table(client, f"{batch.job_dir}/data"), batch.fn_key)
        loaded = pickle.loads(blob)
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
    _runner.run_batch(wire.decode_batch(data), Outbox(outcomes.extend, background=False))
    return wire.encode_outcomes(outcomes)
