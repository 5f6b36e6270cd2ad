"""What travels between the driver and workers: functions and arguments (cloudpickle), task
batches and their outcomes (plain pickle of builtins), each bounded in size.

Batches and outcome groups are columns (one list per field, not one object per call: a
no-op call costs less than building an object for it) and travel as tuples of builtins,
so decoding one never runs user code; user code is unpickled only in `runner` (cloudpickle)
and in a future's result()."""

from __future__ import annotations

import ast
import functools
import inspect
import io
import linecache
import os
import pickle
import re
import sys
import sysconfig
from pathlib import Path
from typing import Any, NamedTuple

import cloudpickle

from taureau.analytics.errors import UnpicklableError

PROTOCOL = 5
# Why these numbers: a pipe or HTTP message must stay far under the invoke limit (5 MiB) and
# small enough that one worker's backlog does not hold the driver's memory; anything larger
# goes through the state store, where blocks bound it instead.
INLINE_ARGS_MAX = 64 << 10  # pickled arguments above this go through state
INLINE_RESULT_MAX = 64 << 10  # pickled results above this go through state
BATCH_BYTES_MAX = 1 << 20  # a batch is cut before its inline arguments pass this
OUTCOMES_BYTES_MAX = 1 << 20  # a worker flushes its outcomes before they pass this
TRACEBACK_MAX = 16 << 10  # characters of a remote traceback kept

# Values the C pickler writes exactly as cloudpickle would (no class or function by reference,
# so nothing to import on the other side): these skip cloudpickle, ten times slower per call.
_SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None)})


# How a batch carries its calls' arguments.
PICKLED = 0  # one pickled (args, kwargs) per call (None: under `keys` in the job's data table)
SCALARS = 1  # each call's single argument itself, a small scalar: the batch's pickle is theirs

SCALAR_TEXT_MAX = 1024  # a str or bytes travels as a scalar up to this length (256 of them
# in a batch or a group stay far under a message's bound)


class Batch(NamedTuple):
    """Calls of one job, as columns: a worker runs them in order. Positions (0..n-1) index
    `call_ids`, `args` and `extras`; outcomes name their batch and first position."""

    batch_id: int
    executor_dir: str  # /analytics/<executor id>
    job_dir: str  # the job's directory (a map_reduce's reducers share their mappers')
    fn_key: str  # the function's key: a worker's cache, and the data table when `fn` is None
    state_address: str
    kind: str  # "call", "map" (map side of map_reduce) or "reduce"
    call_ids: range | list[int]  # a range when the calls are consecutive (a first dispatch)
    mode: int  # PICKLED or SCALARS
    args: list[Any]  # per position: pickled (args, kwargs), the scalar argument, or None
    keys: dict[int, str] | None  # position -> key in the job's data table of large arguments
    extra: Any  # per-kind builtins: (partitions, by_key) for "map"; per position for "reduce"
    extras: list[Any] | None  # per position, when calls differ: (partition, mappers, by_key)
    fn: bytes | None = None  # the pickled function itself when it is small (INLINE_ARGS_MAX)


# What became of a call, one byte per call of a group.
VALUE, PICKLED_VALUE, STORED, ERROR, STATE_FULL = 0, 1, 2, 3, 4


class Group(NamedTuple):
    """Outcomes of consecutive calls of a batch, from position `pos` on, as columns. A call
    starts when the one before it ends (the first at `t0`): workers run a batch in order."""

    batch_id: int
    pos: int
    worker: str
    t0: float  # wall-clock start of the call at `pos`, on the worker
    ends: list[float]  # wall-clock end of each call
    kinds: bytes  # VALUE .. STATE_FULL per call
    values: list[Any]  # per call: VALUE the value itself (a small scalar), PICKLED_VALUE its
    # pickle, STORED (key, size) in the job's results, ERROR/STATE_FULL (type name, message,
    # traceback, pickled exception or None)


def encode_batch(batch: Batch) -> bytes:
    return pickle.dumps(tuple(batch), protocol=PROTOCOL)


def decode_batch(data: bytes) -> Batch:
    if not isinstance(data, bytes | bytearray):  # a function invoked with text gets a str
        raise TypeError(f"not a task batch: {type(data).__name__} (a batch is a pickle, sent as bytes)")
    batch = pickle.loads(data)
    if type(batch) is not tuple or len(batch) != len(Batch._fields):
        raise TypeError(f"not a task batch: {type(batch).__name__}")
    return Batch._make(batch)


def encode_batches(batches: list[bytes]) -> bytes:
    """Encoded batches for one worker, in one message (a pool worker's wire)."""
    return pickle.dumps(batches, protocol=PROTOCOL)


def decode_batches(data: bytes) -> list[Batch]:
    encoded = pickle.loads(data)
    if type(encoded) is not list:
        raise TypeError(f"not a list of task batches: {type(encoded).__name__}")
    return [decode_batch(b) for b in encoded]


# Groups travel as plain tuples: pickle writes a tuple in C, a NamedTuple through copyreg's
# __reduce_ex__, item by item.
def encode_groups(groups: list[Group]) -> bytes:
    return pickle.dumps([tuple(g) for g in groups], protocol=PROTOCOL)


def decode_groups(data: bytes) -> list[Group]:
    return [Group._make(g) for g in pickle.loads(data)]


_TEXT = (str, bytes)
_FIXED = frozenset({float, complex, bool, type(None)})  # scalars of a fixed, small size
INT_MAX = 1 << 63  # an int travels as a scalar below this magnitude (larger ones are pickled)


def is_small_scalar(value: Any) -> bool:
    """Does `value` travel as itself (the C pickler writes it as cloudpickle would, and it is
    small enough for any message)?"""
    t = type(value)
    if t is int:
        return -INT_MAX < value < INT_MAX
    return t in _FIXED or (t in _TEXT and len(value) <= SCALAR_TEXT_MAX)


FIXED_TYPES, TEXT_TYPES = _FIXED, _TEXT  # for the runner's inlined check


def _all_small(items: list[Any], types: set[type]) -> bool:
    if types == {int}:  # the common case, checked in C
        return min(items) > -INT_MAX and max(items) < INT_MAX
    if types <= _FIXED:
        return True
    return all(is_small_scalar(x) for x in items)


def call_payloads(fn: Any, items: list[Any], extra_args: Any = None) -> tuple[int, list[Any]]:
    """A job's arguments: (SCALARS, the items) when every item is a small scalar and nothing
    is added (no pickling here: the batch's pickle carries them), else (PICKLED, one pickled
    (args, kwargs) per call, Lithops' convention). UnpicklableError names the first call
    that fails."""
    types = set(map(type, items))
    if extra_args is None and types <= _SCALARS and _all_small(items, types):
        return SCALARS, items
    return PICKLED, dumps_calls(fn, items, extra_args)


def dumps_result(value: Any) -> bytes:
    """A call's value, pickled: a scalar by the C pickler (a cloudpickle Pickler per call costs
    more than a no-op call, and for a scalar both write the same bytes), anything else by
    cloudpickle. Not the C pickler first for everything: writing a class by reference makes it
    import the class's module, which on a worker may run a user module's top-level code."""
    if type(value) in _SCALARS:
        return pickle.dumps(value, protocol=PROTOCOL)
    return cloudpickle.dumps(value, protocol=PROTOCOL)


# -- user code and data -----------------------------------------------------------------------

_SHIPPED_BY_VALUE: set[str] = set()
_INSTALLED = tuple(
    os.path.realpath(p) + os.sep
    for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], sysconfig.get_paths()["stdlib"]}
)


def _ship_module_by_value(fn: Any) -> None:
    """Pickle the module of `fn` by value when a worker may not be able to import it (a
    script, a test module, an example): installed packages and taureau itself go by name."""
    name = getattr(fn, "__module__", None)
    if not name or name == "__main__" or name in _SHIPPED_BY_VALUE or name.startswith("taureau."):
        return
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if module is None or path is None or os.path.realpath(path).startswith(_INSTALLED):
        return
    cloudpickle.register_pickle_by_value(module)
    _SHIPPED_BY_VALUE.add(name)


ENV_BYTES_MAX = 64 << 10  # a job's extra_env, names and values together


def check_env(env: Any) -> dict[str, str] | None:
    """A job's extra_env (Lithops'): variable names and values, all strings."""
    if env is None:
        return None
    if not isinstance(env, dict):
        raise TypeError(f"extra_env is a dict of str to str, not {type(env).__name__}")
    size = 0
    for name, value in env.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"extra_env: {name!r}: names and values are strings")
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ValueError(f"extra_env: {name!r} is not a valid environment variable name")
        size += len(name.encode()) + len(value.encode())
    if size > ENV_BYTES_MAX:
        raise ValueError(f"extra_env holds {size} bytes; at most {ENV_BYTES_MAX}")
    return dict(env) or None


def dumps_function(fn: Any, partitioner: Any = None, env: dict[str, str] | None = None) -> bytes:
    """The pickled (fn, partitioner, env) a job's workers load once."""
    for f in (fn, partitioner):
        if f is not None and not callable(f):
            raise UnpicklableError(f"{f!r} is not callable")
        _ship_module_by_value(f)
    try:
        return cloudpickle.dumps((fn, partitioner, env), protocol=PROTOCOL)
    except Exception as exc:
        raise UnpicklableError(f"cannot pickle the function {getattr(fn, '__qualname__', fn)!r}: "
                               f"{type(exc).__name__}: {exc}") from exc  # fmt: skip


def dumps_calls(fn: Any, items: list[Any], extra_args: Any = None) -> list[bytes]:
    """Each element of a job's iterdata as the pickled (args, kwargs) of its call (Lithops'
    convention, `CallConvention`); UnpicklableError names the first call that fails."""
    if extra_args is None and {type(x) for x in items} <= _SCALARS:
        # A scalar is always the single argument: the same bytes, at a tenth of the cost.
        empty: dict[str, Any] = {}
        return [pickle.dumps(((x,), empty), protocol=PROTOCOL) for x in items]
    convention = CallConvention(fn, extra_args)
    return dumps_args([convention(x) for x in items])


def dumps_args(calls: list[tuple[tuple, dict]]) -> list[bytes]:
    """Pickle each call's (args, kwargs); UnpicklableError names the first call that fails.
    One pickler serves the whole job: building a cloudpickle Pickler costs more than pickling
    a small argument."""
    buf = io.BytesIO()
    pickler = cloudpickle.Pickler(buf, protocol=PROTOCOL)
    out = []
    for index, (args, kwargs) in enumerate(calls):
        buf.seek(0)
        buf.truncate()
        pickler.clear_memo()
        try:
            pickler.dump((args, kwargs))
        except Exception as exc:
            raise UnpicklableError(f"argument of call {index} cannot be pickled ({_culprit(args, kwargs)}): "
                                   f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
        out.append(buf.getvalue())
    return out


def _culprit(args: tuple, kwargs: dict) -> str:
    for i, a in enumerate(args):
        if not _picklable(a):
            return f"positional argument {i}, a {type(a).__name__}"
    for k, v in kwargs.items():
        if not _picklable(v):
            return f"keyword argument {k!r}, a {type(v).__name__}"
    return "unknown part"


def _picklable(obj: Any) -> bool:
    try:
        cloudpickle.dump(obj, io.BytesIO(), protocol=PROTOCOL)
        return True
    except Exception:
        return False


class CallConvention:
    """Lithops' rule for one element of map_iterdata: a dict whose keys all name parameters is
    passed as keywords, a tuple or list is spread over a function of several positional
    parameters (or none: `()` calls a function without any), anything else is the single
    argument; extra_args (a tuple or dict) follow. The signature is read once per job."""

    def __init__(self, fn: Any, extra_args: Any = None) -> None:
        self.params = _parameters(fn)
        self.extra_args = extra_args

    def __call__(self, item: Any) -> tuple[tuple, dict]:
        params, extra_args = self.params, self.extra_args
        if isinstance(item, dict) and item and params is not None and set(item) <= params[1]:
            args: tuple = ()
            kwargs = dict(item)
        elif isinstance(item, (tuple, list)) and params is not None and params[0] != 1:
            args, kwargs = tuple(item), {}
        else:
            args, kwargs = (item,), {}
        if isinstance(extra_args, dict):
            kwargs.update(extra_args)
        elif extra_args is not None:
            args += tuple(extra_args)
        return args, kwargs


class WithExtraArgs:
    """A function called with extra arguments after its own (Lithops' extra_args_reduce: the
    reducer's inputs come from the shuffle, the extras from the caller). Importable by
    workers, so it pickles by reference around the user's function."""

    def __init__(self, fn: Any, extra: Any) -> None:
        if not isinstance(extra, (tuple, list, dict)):
            raise TypeError(f"extra arguments are a tuple, list or dict, not {type(extra).__name__}")
        _ship_module_by_value(fn)  # the wrapper is taureau's; the function inside ships as any job's
        self.fn, self.extra = fn, extra
        self.__name__ = self.__qualname__ = getattr(fn, "__qualname__", type(fn).__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self.extra, dict):
            return self.fn(*args, **kwargs, **self.extra)
        return self.fn(*args, *self.extra, **kwargs)


def _parameters(fn: Any) -> tuple[int, set[str]] | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]  # fmt: skip
    names = {p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    many = any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values())
    return (2 if many else len(positional)), names


# -- remote tracebacks ----------------------------------------------------------------------

_FRAME = re.compile(r'^  File "<dynamic-code>", line (\d+), in (\S+)$', re.MULTILINE)


def localize_traceback(tb: str) -> str:
    """Name the driver's files in a remote traceback: cloudpickle ships code by value as
    "<dynamic-code>", which would leave the user's own frames without file or source line."""
    if "<dynamic-code>" not in tb:
        return tb
    files = [f for f in (getattr(sys.modules.get(m), "__file__", None) for m in ("__main__", *_SHIPPED_BY_VALUE)) if f]

    def frame(m: re.Match) -> str:
        line, name = int(m.group(1)), m.group(2)
        for path in files:
            if _defines(path, name, line):
                source = linecache.getline(path, line).strip()
                return f'  File "{path}", line {line}, in {name}' + (f"\n    {source}" if source else "")
        return m.group(0)

    return _FRAME.sub(frame, tb)


@functools.lru_cache(maxsize=64)
def _spans(path: str) -> dict[str, list[tuple[int, int]]]:
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return {}
    spans: dict[str, list[tuple[int, int]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            spans.setdefault(node.name, []).append((node.lineno, node.end_lineno or node.lineno))
        elif isinstance(node, ast.Lambda):
            spans.setdefault("<lambda>", []).append((node.lineno, node.end_lineno or node.lineno))
        elif isinstance(node, ast.Module):
            spans.setdefault("<module>", []).append((1, 10**9))
    return spans


def _defines(path: str, name: str, line: int) -> bool:
    return any(lo <= line <= hi for lo, hi in _spans(path).get(name, ()))
