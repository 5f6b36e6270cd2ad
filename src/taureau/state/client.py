"""StateClient: the synchronous, thread- and fork-safe client of the state controller and memory servers."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from taureau.common import errors
from taureau.state import codec
from taureau.state.codec import EVENT, Frame, Op
from taureau.state.conn import Conn
from taureau.state.limits import CONTROL_MAX
from taureau.state.structures import File, HashTable, Queue, Structure

S = TypeVar("S", bound=Structure)
# What a client authenticates with, as the broker takes it: (method, data) made fresh for
# each controller connection, so a token supplier can hand out a renewed token.
Credentials = Callable[[], tuple[str, str]]


def credentials(token: str | Callable[[], str] | None = None,
                basic: tuple[str, str] | None = None) -> Credentials | None:
    """A token (or a function returning the current one), or a basic user and password."""
    if token is not None and basic is not None:
        raise ValueError("give a token or a basic user, not both")
    if basic is not None:
        user, password = basic
        return lambda: ("basic", f"{user}:{password}")
    if token is None:
        return None
    supply = token if callable(token) else (lambda: token)
    return lambda: ("token", supply().strip())


def dial_controller(address: str, timeout: float, creds: Credentials | None) -> Conn:
    """A controller connection, authenticated when there are credentials."""
    conn = Conn(address, timeout, CONTROL_MAX)
    if creds is not None:
        method, data = creds()
        try:
            conn.call(Op.AUTH, codec.pack_json({"method": method, "data": data}))
        except BaseException:
            conn.close()
            raise
    return conn

# Threads: control calls share one controller connection under a lock (they are rare);
# data calls use one connection per (thread, memory server), so threads never wait on each
# other's round trips. Processes: after a fork every connection and the lease renewer are
# rebuilt on first use, so a client made before a fork keeps working in the child.


class Notification(NamedTuple):
    op: str  # "put", "upsert", "update", "remove", "enqueue", "dequeue" or "write"
    path: str  # the structure the operation touched
    data: bytes  # the key (hash ops), the item (queue ops) or the u64 offset (write)


RECONNECTED = "reconnected"  # Notification.op after a subscription had to be made again


class Subscription:
    """Notifications for operations under one path, on a connection of its own.

    >>> sub = client.listen("/jobs/j1", ops=["put"])
    >>> n = sub.get_notification(timeout=5)   # None if nothing came in time

    If the controller restarts, the subscription is made again on a new connection (for up
    to the client's timeout) and the next notification is `Notification("reconnected",
    path, b"")`: events between the loss and that one may be missing, so re-read the state
    you wait for.
    """

    def __init__(self, address: str, path: str, ops: list[str] | None, timeout: float,
                 creds: Credentials | None = None) -> None:
        self._address, self._path, self._ops, self._timeout = address, path, ops, timeout
        self._creds = creds
        self._closed = False
        self._conn = self._connect(first=True)

    def _subscribe(self) -> Conn:
        conn = dial_controller(self._address, self._timeout, self._creds)
        try:
            conn.call(Op.SUBSCRIBE, codec.pack_json({"path": self._path, "ops": self._ops}))
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self, first: bool) -> Conn:
        deadline = time.monotonic() + self._timeout
        delay = RETRY_MIN_S
        while True:
            try:
                conn = self._subscribe()
                if not first:
                    conn.events.append(
                        Frame(EVENT, Op.NOTIFY, 0, [RECONNECTED.encode(), self._path.encode(), b""])
                    )
                return conn
            except errors.StateUnavailableError:
                if self._closed or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def get_notification(self, timeout: float | None = None) -> Notification | None:
        c = self._conn
        while not c.events:
            if self._closed:
                raise errors.StateUnavailableError("subscription is closed")
            try:
                frames = c.read_frames(timeout if timeout is not None else 3600.0)
            except errors.StateUnavailableError:
                c = self._conn = self._connect(first=False)
                continue
            if not frames and timeout is not None:
                return None
            c.events.extend(f for f in frames if f.kind == EVENT)
        f = c.events.pop(0)
        return Notification(f.fields[0].decode(), f.fields[1].decode(), f.fields[2])

    def close(self) -> None:
        self._closed = True
        self._conn.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Control ops a client may send again when it cannot tell whether the first one arrived.
_REPEATABLE = frozenset(
    {Op.HELLO, Op.OPEN, Op.EXISTS_PATH, Op.LIST, Op.STATUS, Op.BLOCK_MAP, Op.RENEW, Op.CLOSE, Op.STATS,
     Op.GROW, Op.QUOTA}
)  # fmt: skip
RETRY_MIN_S, RETRY_MAX_S = 0.05, 1.0


def _repeatable(op: int, args: dict[str, Any]) -> bool:
    return op in _REPEATABLE or (op == Op.CREATE and bool(args.get("exist_ok")))


def _renew_groups(paths: list[str]) -> list[list[str]]:
    """Cut a RENEW of many paths into requests well under the controller's frame limit."""
    groups: list[list[str]] = []
    size = CONTROL_MAX
    for p in paths:
        n = len(codec.pack_json(p)[0]) + 1
        if size + n > CONTROL_MAX // 2:
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += n
    return groups


class StateClient:
    """Client of one state deployment.

    >>> c = StateClient("localhost:9090")
    >>> ht = c.open_or_create_hash_table("/jobs/j1/shuffle/0")
    >>> ht.put(b"k", b"v"); ht.get(b"k")
    b'v'

    With authentication on, give `token` (a string, or a function returning the current
    token: it is called again when the token expires) or `basic=(user, password)`; a
    refusal raises StateAuthenticationError or StateAuthorizationError (docs/security.md).
    """

    def __init__(self, address: str = "localhost:9090", *, timeout: float = 30.0,
                 token: str | Callable[[], str] | None = None, basic: tuple[str, str] | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self._creds = credentials(token, basic)
        self._setup()

    def _setup(self) -> None:
        self._pid = os.getpid()
        self._ctl_lock = threading.Lock()
        self._ctl: Conn | None = None  # dialled on first use, and again after it breaks
        self._reached = False  # some request got a reply: an unreachable controller is restarting
        self._local = threading.local()
        self._all_conns: list[Conn] = []  # every data connection, to close them all
        self._open_lock = threading.Lock()
        self._open: dict[str, int] = {}  # path -> number of open handles (renewed while > 0)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lease_ms = self.control(Op.HELLO, {})["lease_ms"]

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            opened = dict(self._open)
            self._setup()
            self._open = opened
            if opened:
                self._start_renewer()

    # -- plumbing -------------------------------------------------------------------------------

    def control(self, op: int, args: dict[str, Any]) -> dict[str, Any]:
        """One controller request; returns its JSON reply or raises the typed error.

        While a controller this client has reached before cannot be reached (it is
        restarting), the request is tried again for up to the client's timeout, if it was never
        sent or is safe to repeat; a request that may have been applied before its connection
        broke raises StateUnavailableError.
        """
        self._check_fork()
        deadline = time.monotonic() + self.timeout
        delay = RETRY_MIN_S
        frame = codec.pack_json(args)
        reauthenticated = False
        while True:
            try:
                with self._ctl_lock:
                    sent = False
                    if self._ctl is None or self._ctl.broken or self._ctl.stale():
                        if self._ctl is not None:
                            self._ctl.close()
                        self._ctl = None
                        self._ctl = dial_controller(self.address, self.timeout, self._creds)
                    sent = True
                    fields = self._ctl.call(op, frame)
                    self._reached = True
                return codec.unpack_json(fields)
            except errors.StateAuthenticationError:
                # The token this connection proved has expired: once, dial again with what
                # the credentials give now (a supplier's renewed token). Nothing was done.
                if reauthenticated or not sent:
                    raise
                reauthenticated = True
                with self._ctl_lock:
                    if self._ctl is not None:
                        self._ctl.close()
                continue
            except errors.StateUnavailableError:
                if not self._reached:  # never reached: a wrong address, not a restart
                    raise
                if sent and not _repeatable(op, args) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def conn(self, address: str) -> Conn:
        """This thread's connection to a memory server."""
        self._check_fork()
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        c = conns.get(address)
        if c is None or c.broken:
            c = conns[address] = Conn(address, self.timeout)
            self._all_conns.append(c)
        return c

    def _opened(self, path: str) -> None:
        with self._open_lock:
            self._open[path] = self._open.get(path, 0) + 1
        self._start_renewer()

    def _start_renewer(self) -> None:
        if self._renewer is None or not self._renewer.is_alive():
            self._renewer = threading.Thread(target=self._renew_loop, name="state-lease-renewer", daemon=True)
            self._renewer.start()

    def _renew_loop(self) -> None:
        # Renew at a third of the lease so two lost renewals in a row still leave margin.
        while not self._stop.wait(self.lease_ms / 3000):
            self.renew()

    def renew(self) -> None:
        """Renew every path this client has open (the background thread does this for you)."""
        with self._open_lock:
            paths = list(self._open)
        missing: list[str] = []
        try:
            for group in _renew_groups(paths):
                missing += self.control(Op.RENEW, {"paths": group})["missing"]
        except errors.StateError:
            return  # the controller is unreachable for now; the next tick retries
        with self._open_lock:
            for p in missing:
                self._open.pop(p, None)

    # -- structures -----------------------------------------------------------------------------

    def create(self, path: str, kind: type[S], num_blocks: int = 1, *, backing_path: str | None = None,
               pinned: bool = False, mapped: bool = False, replicas: int = 1) -> S:  # fmt: skip
        """Create a structure of any kind, e.g. `create("/jobs/j1/hits", Counter)`. `replicas`:
        every block is kept on that many memory servers (a chain: writes through its head,
        reads from its tail); losing one of them loses nothing."""
        args = self._create_args(num_blocks, backing_path, pinned, mapped, replicas)
        return self._structure(kind, Op.CREATE, path, **args)

    def open(self, path: str, kind: type[S]) -> S:
        """Open an existing structure (WrongTypeError if it is of another kind)."""
        return self._structure(kind, Op.OPEN, path)

    def open_or_create(self, path: str, kind: type[S], num_blocks: int = 1, *, backing_path: str | None = None,
                       pinned: bool = False, mapped: bool = False, replicas: int = 1) -> S:  # fmt: skip
        """Open `path`, creating it as a `kind` if it does not exist."""
        args = self._create_args(num_blocks, backing_path, pinned, mapped, replicas)
        return self._structure(kind, Op.CREATE, path, exist_ok=True, **args)

    def _structure(self, cls: type[S], op: int, path: str, **args: Any) -> S:
        m = self.control(op, {"path": path, "kind": cls.kind, **args})
        self._opened(path)
        return cls(self, path, m)

    def _create_args(
        self, num_blocks: int, backing_path: str | None, pinned: bool, mapped: bool, replicas: int = 1
    ) -> dict:
        return {
            "num_blocks": num_blocks, "backing": backing_path, "pinned": pinned, "mapped": mapped,
            "replicas": replicas,
        }  # fmt: skip

    # The three original kinds keep their named methods (functions/ephemeral.py uses them).
    def create_hash_table(self, path: str, num_blocks: int = 1, **flags: Any) -> HashTable:
        return self.create(path, HashTable, num_blocks, **flags)

    def open_hash_table(self, path: str) -> HashTable:
        return self.open(path, HashTable)

    def open_or_create_hash_table(self, path: str, num_blocks: int = 1, **flags: Any) -> HashTable:
        return self.open_or_create(path, HashTable, num_blocks, **flags)

    def create_queue(self, path: str, **flags: Any) -> Queue:
        return self.create(path, Queue, 1, **flags)

    def open_queue(self, path: str) -> Queue:
        return self.open(path, Queue)

    def open_or_create_queue(self, path: str, **flags: Any) -> Queue:
        return self.open_or_create(path, Queue, 1, **flags)

    def create_file(self, path: str, num_blocks: int = 1, **flags: Any) -> File:
        return self.create(path, File, num_blocks, **flags)

    def open_file(self, path: str) -> File:
        return self.open(path, File)

    def open_or_create_file(self, path: str, num_blocks: int = 1, **flags: Any) -> File:
        return self.open_or_create(path, File, num_blocks, **flags)

    # -- namespace ------------------------------------------------------------------------------

    def listen(self, path: str, ops: list[str] | None = None) -> Subscription:
        """Subscribe to `ops` (default: all) on every structure under `path`."""
        self._check_fork()
        return Subscription(self.address, path, ops, self.timeout, self._creds)

    def close(self, path: str) -> None:
        """Stop renewing `path`'s lease; it expires after lease + grace unless renewed elsewhere."""
        with self._open_lock:
            self._open.pop(path, None)
        self.control(Op.CLOSE, {"path": path})

    def remove(self, path: str, recursive: bool = True) -> None:
        with self._open_lock:
            for p in [p for p in self._open if p == path or p.startswith(path.rstrip("/") + "/")]:
                del self._open[p]
        self.control(Op.REMOVE_PATH, {"path": path, "recursive": recursive})

    def exists(self, path: str) -> bool:
        return self.control(Op.EXISTS_PATH, {"path": path})["exists"]

    def rename(self, src: str, dst: str) -> None:
        self.control(Op.RENAME, {"src": src, "dst": dst})

    def ls(self, path: str = "/") -> list[dict[str, str]]:
        return self.control(Op.LIST, {"path": path})["children"]

    def status(self, path: str) -> dict[str, Any]:
        return self.control(Op.STATUS, {"path": path})

    def dump(self, path: str, dest: str, owner: str | None = None) -> dict[str, Any]:
        """Write a copy of the structure to `dest` (e.g. `local://jobs/j1/shuffle0.dump`). With
        `owner` (a structure's path), the dump is deleted when that structure leaves the
        namespace: removed, or reclaimed when its lease expires (a dead client's spills)."""
        args = {"path": path, "dest": dest}
        if owner is not None:
            args["owner"] = owner
        return self.control(Op.DUMP, args)

    def load(self, path: str, src: str) -> None:
        """Create `path` from a dump (or reload a structure flushed on lease expiry)."""
        self.control(Op.LOAD, {"path": path, "src": src})

    def drop_dump(self, src: str) -> None:
        """Delete a dump written by `dump` (BackingStoreError if `src` is not a dump)."""
        self.control(Op.DROP_DUMP, {"src": src})

    def renew_path(self, path: str) -> None:
        """Renew one path's lease now (and its ancestors' and descendants')."""
        missing = self.control(Op.RENEW, {"paths": [path]})["missing"]
        if missing:
            raise errors.PathNotFoundError(f"path not found: {path}")

    def set_quota(self, path: str, blocks: int | None) -> dict[str, Any]:
        """Limit the blocks held at or under `path` (a job's or tenant's directory; it need not
        exist yet); None drops the quota. Returns {"path", "blocks", "used"}."""
        return self.control(Op.QUOTA, {"path": path, "blocks": blocks})

    def quota(self, path: str) -> dict[str, Any]:
        """{"path", "blocks" (None: no quota), "used"} of a directory."""
        return self.control(Op.QUOTA, {"path": path})

    def stats(self) -> dict[str, Any]:
        return self.control(Op.STATS, {})

    def disconnect(self) -> None:
        """Stop renewing and close every connection (leases then run out on their own)."""
        self._stop.set()
        for c in [self._ctl, *self._all_conns]:
            if c is not None:
                c.close()

    def __enter__(self) -> StateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
