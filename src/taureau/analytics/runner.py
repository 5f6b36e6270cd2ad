"""Worker side of every backend: run a batch of calls, report their outcomes in groups.

The function is fetched from the job's data table once per worker and cached; results too
large to inline are written to the job's results table; a result that the state pool cannot
hold is reported as STATE_FULL, so the driver can spill and run the call again."""

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
from taureau.analytics.wire import ERROR, PICKLED_VALUE, STATE_FULL, STORED, VALUE, Batch, Group
from taureau.common import errors

FLUSH_S = 0.005  # a finished call is reported within this long, even while the next one runs
HELD_CALLS_MAX = 1024  # calls whose outcomes wait for the next batch's (small scalars are not
# counted in bytes: this bounds them to a few KiB of a message)
CACHE_FUNCTIONS = 16
CACHE_TABLES = 256


class _Columns:
    """The running batch's outcomes so far. The runner appends kind, value, then end (list
    appends are atomic), so a flusher that reads len(ends) first sees whole calls only."""

    __slots__ = ("batch_id", "t_start", "ends", "kinds", "values", "sent", "unsent_bytes")

    def __init__(self, batch_id: int, t_start: float) -> None:
        self.batch_id = batch_id
        self.t_start = t_start
        self.ends: list[float] = []
        self.kinds = bytearray()
        self.values: list[Any] = []
        self.sent = 0  # calls already sent
        self.unsent_bytes = 0  # pickled values and tracebacks not sent yet

    def add(self, kind: int, value: Any, nbytes: int) -> None:
        self.kinds.append(kind)
        self.values.append(value)
        self.unsent_bytes += nbytes
        self.ends.append(time.time())

    def take(self, worker: str) -> Group | None:
        n, sent = len(self.ends), self.sent
        if n == sent:
            return None
        t0 = self.ends[sent - 1] if sent else self.t_start
        self.sent, self.unsent_bytes = n, 0
        return Group(self.batch_id, sent, worker, t0, self.ends[sent:n], bytes(self.kinds[sent:n]),
                     self.values[sent:n])  # fmt: skip


class Outbox:
    """Outcomes on their way to the driver, groups of calls per message: at a batch's end
    (unless the next batch is already here: then both go in one message, one wake-up of the
    driver), when half a message of bytes or HELD_CALLS_MAX calls wait, and (with
    `background`) from a thread once the oldest unsent call ended FLUSH_S ago, so a finished
    call is reported while the next one runs."""

    def __init__(self, send: Callable[[list[Group]], None], worker: str, *, background: bool) -> None:
        self._send = send
        self.worker = worker
        self._cond = threading.Condition()  # one flush at a time; wakes the flusher at a batch's start
        self._columns: list[_Columns] = []  # batches with calls not sent yet, the open one last
        self._open: _Columns | None = None
        self._broken = False
        if background:
            threading.Thread(target=self._flush_when_due, name="outcomes", daemon=True).start()

    def open(self, batch_id: int) -> _Columns:
        cols = _Columns(batch_id, time.time())
        with self._cond:
            if not self._columns:
                self._cond.notify()  # the flusher sleeps until there is something to watch
            self._columns.append(cols)
            self._open = cols
        return cols

    def close(self, cols: _Columns, *, more: bool = False) -> None:
        """The batch ended. Its outcomes go now, or with the next batch's when `more` says that
        one is already here (the flusher still sends them within FLUSH_S)."""
        with self._cond:
            self._open = None
            if not more or self._held_calls() > HELD_CALLS_MAX or self._held_bytes() > _HALF_MESSAGE:
                self._flush()

    def flush_if_large(self, cols: _Columns) -> None:
        if cols.unsent_bytes > _HALF_MESSAGE or (len(self._columns) > 1 and self._held_bytes() > _HALF_MESSAGE):
            with self._cond:
                self._flush()

    def _held_calls(self) -> int:
        return sum(len(c.ends) - c.sent for c in self._columns)

    def _held_bytes(self) -> int:
        return sum(c.unsent_bytes for c in self._columns)

    def _flush(self) -> None:
        groups = [g for c in self._columns if (g := c.take(self.worker)) is not None]
        self._columns = [self._open] if self._open is not None else []
        if groups and not self._broken:
            self._send(groups)

    def _due(self) -> bool:
        oldest = min((c.ends[c.sent] for c in self._columns if len(c.ends) > c.sent), default=None)
        return oldest is not None and time.time() - oldest >= FLUSH_S / 2

    def _flush_when_due(self) -> None:
        with self._cond:
            while not self._broken:
                if not self._columns:
                    self._cond.wait()
                    continue
                if self._due():
                    try:
                        self._flush()
                    except OSError:
                        self._broken = True  # the driver hung up; the main thread finds out on its own send
                # Checked every FLUSH_S/2, so a call is reported at most FLUSH_S after its end.
                self._cond.wait(FLUSH_S / 2)


_HALF_MESSAGE = wire.OUTCOMES_BYTES_MAX // 2


class Runner:
    """Runs batches in one worker process (a pool worker, a function instance or a Ray worker)."""

    def __init__(self, worker: str | None = None) -> None:
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._functions: OrderedDict[tuple[str, str], tuple[Any, Any, dict[str, str] | None]] = OrderedDict()
        self._tables: OrderedDict[str, Any] = OrderedDict()
        self._spaces: dict[str, JobSpace] = {}

    def run_batch(self, batch: Batch, outbox: Outbox, *, more: bool = False) -> None:
        """Run every call of `batch` in order, its outcomes to `outbox`; `more`: another batch
        is waiting to run next. What is the same for every call (the client, the job's space,
        the function) is looked up once."""
        client = client_for(batch.state_address)
        token = set_current(self._space(client, batch.executor_dir))
        cols = outbox.open(batch.batch_id)
        try:
            try:
                fn, partitioner, env = self._function(client, batch)
            except BaseException as exc:  # noqa: BLE001 - every call of the batch reports it
                if isinstance(exc, KeyboardInterrupt):
                    raise
                error = _error(exc)
                for _ in batch.call_ids:
                    cols.add(ERROR, error, len(error[2]))
                    outbox.flush_if_large(cols)
                return
            if batch.kind == "call" and batch.mode == wire.SCALARS and env is None:
                self._run_scalars(client, batch, fn, cols, outbox)
            else:
                for pos in range(len(batch.call_ids)):
                    cols.add(*self._run_one(client, batch, pos, fn, partitioner, env))
                    outbox.flush_if_large(cols)
        finally:
            token.var.reset(token)
            outbox.close(cols, more=more)

    def _run_scalars(self, client: Any, batch: Batch, fn: Any, cols: _Columns, outbox: Outbox) -> None:
        """The common case, a map over small scalars, in a loop of its own: a no-op call then
        costs a call, a type check and three appends."""
        kinds, values, ends, now = cols.kinds, cols.values, cols.ends, time.time
        fixed, text, text_max, int_max = wire.FIXED_TYPES, wire.TEXT_TYPES, wire.SCALAR_TEXT_MAX, wire.INT_MAX
        for pos, x in enumerate(batch.args):
            try:
                v = fn(x)
            except BaseException as exc:  # noqa: BLE001 - whatever user code raises is the call's outcome
                if isinstance(exc, KeyboardInterrupt):
                    raise
                error = _error(exc)
                cols.add(ERROR, error, len(error[2]))
                outbox.flush_if_large(cols)
                continue
            t = type(v)
            if (t is int and -int_max < v < int_max) or t in fixed:
                kinds.append(VALUE)
                values.append(v)
                ends.append(now())
            elif t in text and len(v) <= text_max:
                cols.add(VALUE, v, len(v))
            else:
                cols.add(*self._keep(client, batch.job_dir, batch.call_ids[pos], v))
                outbox.flush_if_large(cols)

    def _run_one(self, client: Any, batch: Batch, pos: int, fn: Any, partitioner: Any,
                 env: dict[str, str] | None) -> tuple[int, Any, int]:  # fmt: skip
        jdir = batch.job_dir
        call_id = batch.call_ids[pos]
        try:
            if batch.mode == wire.SCALARS:
                args: tuple = (batch.args[pos],)
                kwargs: dict = {}
            else:
                raw = batch.args[pos]
                if raw is None:
                    raw = get_blob(self._table(client, f"{jdir}/data"), (batch.keys or {})[pos])
                args, kwargs = pickle.loads(raw)
            extra = batch.extra if batch.extras is None else batch.extras[pos]
            saved = _set_env(env) if env else None
            try:
                value = self._call(client, jdir, batch.kind, call_id, extra, fn, partitioner, args, kwargs)
            finally:
                if saved is not None:
                    _restore_env(saved)
            return self._keep(client, jdir, call_id, value)
        except BaseException as exc:  # noqa: BLE001 - whatever user code raises is the call's outcome
            if isinstance(exc, KeyboardInterrupt):
                raise
            error = _error(exc)
            return ERROR, error, len(error[2])

    def _keep(self, client: Any, jdir: str, call_id: int, value: Any) -> tuple[int, Any, int]:
        """A call's value as it travels: itself, pickled, or (too large) stored in the job's
        results table; STATE_FULL when the pool cannot hold it, so the driver spills and reruns."""
        try:
            if wire.is_small_scalar(value):
                return VALUE, value, len(value) if type(value) in wire.TEXT_TYPES else 0
            data = wire.dumps_result(value)
            if len(data) <= wire.INLINE_RESULT_MAX:
                return PICKLED_VALUE, data, len(data)
            key = f"{call_id}"
            put_blob(self._table(client, results_path(jdir, segment_of(call_id))), key, data)
            return STORED, (key, len(data)), 0
        except errors.OutOfMemoryError as exc:
            error = _error(exc)
            return STATE_FULL, error, len(error[2])
        except Exception as exc:  # noqa: BLE001 - a value that does not pickle fails its call
            error = _error(exc)
            return ERROR, error, len(error[2])

    def _call(self, client: Any, jdir: str, kind: str, call_id: int, extra: Any, fn: Any, partitioner: Any,
              args: tuple, kwargs: dict) -> Any:  # fmt: skip
        if kind == "reduce":
            partition, mappers, by_key = extra
            return shuffle.reduce_partition(client, jdir, fn, partition, mappers, by_key)
        value = fn(*args, **kwargs)
        if kind == "map":
            partitions, by_key = extra
            return shuffle.write_map_output(client, jdir, call_id, value, partitions, by_key, partitioner)
        return value

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


def _error(exc: BaseException) -> tuple[str, str, str, bytes | None]:
    """(type name, message, traceback, pickled exception or None) of a call's exception."""
    tb = "".join(traceback.format_exception(exc))
    if len(tb) > wire.TRACEBACK_MAX:
        tb = "...\n" + tb[-wire.TRACEBACK_MAX :]
    pickled: bytes | None = None
    try:
        data = cloudpickle.dumps(exc, protocol=wire.PROTOCOL)
        pickled = data if len(data) <= wire.INLINE_RESULT_MAX else None
    except Exception:  # noqa: BLE001 - an exception that does not pickle still has its text
        pass
    return type(exc).__qualname__, str(exc)[:4096], tb, pickled


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
    groups: list[Group] = []
    _runner.run_batch(wire.decode_batch(data), Outbox(groups.extend, _runner.worker, background=False))
    return wire.encode_groups(groups)
