"""Where a job's data lives in `taureau.state`, and the handles tasks and drivers use there.

    /analytics/<executor>/              renewed by the driver while the executor lives (its lease)
        jobs/<job>/data                 hash table: the pickled function, arguments too large to inline
        jobs/<job>/results/<segment>    hash tables: results too large to inline, 256 calls each
        jobs/<job>/shuffle/<partition>  hash tables: map outputs, one entry per mapper
        jobs/<job>/done                 hash table: a key per finished mapper (reducers listen here)
        shared/                         what user code keeps (`job_state()`, `Executor.state`)

Only the driver renews: a worker that opens a structure stops renewing it at once, so a job
whose driver died is reclaimed after lease + grace even while warm workers live on."""

from __future__ import annotations

import contextvars
import pickle
import struct
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import cloudpickle

from taureau.common import errors
from taureau.state import File, HashTable, Queue, StateClient, Subscription

ROOT = "/analytics"
SEGMENT_CALLS = 256  # calls per results table: the unit that spills to durable storage
CHUNK = 1 << 20  # blobs above this are stored as chunks (an entry must fit a quarter block)
_HEAD = struct.Struct(">QQ")  # chunk count, total size

S = TypeVar("S", HashTable, Queue, File)


def executor_dir(executor_id: str) -> str:
    return f"{ROOT}/{executor_id}"


def job_dir(executor_dir_: str, job: str) -> str:
    return f"{executor_dir_}/jobs/{job}"


def segment_of(call_id: int) -> int:
    return call_id // SEGMENT_CALLS


def results_path(job_dir_: str, segment: int) -> str:
    return f"{job_dir_}/results/{segment}"


def shuffle_path(job_dir_: str, partition: int) -> str:
    return f"{job_dir_}/shuffle/{partition}"


# -- blobs: values of any size in a hash table -------------------------------------------------


def put_blob(table: HashTable, key: str, data: bytes) -> None:
    """Upsert `data` under `key`, in CHUNK-sized entries when it is large (a block holds an
    entry whole; chunks let one value span blocks as the table splits)."""
    k = key.encode()
    if len(data) <= CHUNK:
        table.upsert(k, b"V" + data)
        return
    view = memoryview(data)
    chunks = [(k + b"#%d" % i, bytes(view[off : off + CHUNK])) for i, off in enumerate(range(0, len(data), CHUNK))]
    for i in range(0, len(chunks), 8):  # a few MiB per request
        table.multi_put(chunks[i : i + 8])
    table.upsert(k, b"C" + _HEAD.pack(len(chunks), len(data)))  # last: readers never see half a blob


def get_blob(table: HashTable, key: str) -> bytes:
    """The value under `key` (KeyNotFoundError if absent)."""
    k = key.encode()
    head = table.get(k)
    if head[:1] == b"V":
        return head[1:]
    count, size = _HEAD.unpack(head[1:])
    out = bytearray()
    for i in range(0, count, 8):
        for part in table.multi_get([k + b"#%d" % j for j in range(i, min(i + 8, count))]):
            if part is None:
                raise errors.KeyNotFoundError(f"{table.path}: a chunk of {key!r} is missing")
            out += part
    if len(out) != size:
        raise errors.KeyNotFoundError(f"{table.path}: {key!r} has {len(out)} of {size} bytes")
    return bytes(out)


def delete_blob(table: HashTable, key: str) -> None:
    """Remove the value under `key` and its chunks (KeyNotFoundError if absent)."""
    k = key.encode()
    head = table.get(k)
    table.remove(k)  # first: a reader never finds a head whose chunks are gone
    if head[:1] == b"C":
        count, _ = _HEAD.unpack(head[1:])
        for i in range(count):
            table.remove(k + b"#%d" % i)


# -- handles that do not keep a lease alive ----------------------------------------------------

_clients: dict[str, StateClient] = {}
_clients_lock = threading.Lock()


def client_for(address: str) -> StateClient:
    """This process's client of the state deployment at `address` (one per process)."""
    with _clients_lock:
        c = _clients.get(address)
        if c is None:
            c = _clients[address] = StateClient(address)
        return c


def open_unrenewed(client: StateClient, opener: Callable[[str], S], path: str) -> S:
    """Open (or create) a structure without keeping its lease: the driver's renewal of the
    executor directory is what keeps it, so it dies with the driver."""
    handle = opener(path)
    client.close(path)  # a no-op at the controller; stops this client's renewer for the path
    return handle


class LazyTable:
    """A hash table opened (unrenewed) on first use: a job whose function and arguments all
    travel inline never costs a state round trip for its data table, nor one to remove it."""

    def __init__(self, client: StateClient, path: str) -> None:
        self.client, self.path = client, path
        self._table: HashTable | None = None

    @property
    def opened(self) -> bool:
        return self._table is not None

    def table(self) -> HashTable:
        if self._table is None:
            self._table = open_unrenewed(self.client, self.client.open_or_create_hash_table, self.path)
        return self._table


# -- the space user code sees ------------------------------------------------------------------


class JobSpace:
    """A directory of the state store for user code: raw structures and pickled objects.

    >>> st = job_state()                 # inside a task (Executor.state on the driver)
    >>> st.put("weights", w); st.get("weights")
    >>> st.queue("inbox/3").enqueue(b"msg"); st.hash_table("counts").multi_put({...})
    """

    def __init__(self, client: StateClient, root: str, *, renew: bool) -> None:
        self.client = client
        self.root = root.rstrip("/")
        self._renew = renew
        self._handles: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def path(self, name: str) -> str:
        name = name.strip("/")
        if not name:
            raise errors.InvalidPathError("a structure needs a name")
        return f"{self.root}/{name}"

    def _handle(self, kind: str, name: str, opener: Callable[..., Any], **create: Any) -> Any:
        key = (kind, name)
        with self._lock:
            h = self._handles.get(key)
        if h is not None:
            return h
        path = self.path(name)
        h = opener(path, **create) if self._renew else open_unrenewed(self.client, lambda p: opener(p, **create), path)
        with self._lock:
            self._handles[key] = h
        return h

    def hash_table(self, name: str, num_blocks: int = 1) -> HashTable:
        return self._handle("hash_table", name, self.client.open_or_create_hash_table, num_blocks=num_blocks)

    def queue(self, name: str) -> Queue:
        return self._handle("queue", name, self.client.open_or_create_queue)

    def file(self, name: str) -> File:
        """The file, positioned at its start (a handle is shared by the calls of a worker)."""
        f = self._handle("file", name, self.client.open_or_create_file)
        f.seek(0)
        return f

    def put(self, name: str, obj: Any) -> None:
        """Store a Python object (pickled with cloudpickle) under `name`."""
        put_blob(self.hash_table("objects"), name, cloudpickle.dumps(obj, protocol=5))

    def get(self, name: str) -> Any:
        """The object stored under `name` (KeyNotFoundError if there is none)."""
        return pickle.loads(get_blob(self.hash_table("objects"), name))

    def delete(self, name: str) -> None:
        """Forget the object stored under `name` (KeyNotFoundError if there is none)."""
        delete_blob(self.hash_table("objects"), name)

    def listen(self, name: str = "", ops: list[str] | None = None) -> Subscription:
        """Notifications for `ops` on every structure under `name` (the whole space by default)."""
        return self.client.listen(self.path(name) if name else self.root, ops)

    def remove(self, name: str) -> None:
        path = self.path(name)
        with self._lock:
            self._handles = {k: v for k, v in self._handles.items() if not (k[1] + "/").startswith(name.strip("/") + "/")}
        self.client.remove(path)


_current: contextvars.ContextVar[JobSpace | None] = contextvars.ContextVar("taureau_analytics_space", default=None)


def job_state() -> JobSpace:
    """Inside a task: the executor's shared space in the state store."""
    space = _current.get()
    if space is None:
        raise errors.StateError("job_state() is only available inside a task run by an Executor")
    return space


def set_current(space: JobSpace | None) -> contextvars.Token:
    return _current.set(space)
