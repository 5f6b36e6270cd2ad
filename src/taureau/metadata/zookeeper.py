"""ZooKeeperMetadataStore: the MetadataStore on a real ZooKeeper ensemble, through kazoo.

Theory of operation: kazoo runs its own threads (one for the socket, two for callbacks).
Every call here queues a kazoo request from the event loop (kazoo's queue is thread-safe and
never blocks) and awaits an asyncio future that kazoo's completion thread settles with
`call_soon_threadsafe`; the loop never waits on a socket. One ZooKeeper session per store:
its ephemeral nodes are ZooKeeper ephemerals, so they vanish when the session closes or
expires. The store does not open a second session on expiry (kazoo would): ephemerals are
gone then, and whoever registered them must know, so every watcher gets SESSION_EXPIRED and
every later call raises SessionExpiredError. Paths are prefixed with the URL's chroot here
(not by kazoo, whose chroot needs the node to exist first). Watches: see zk_watches.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError as ZkBadVersion,
)
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoChildrenForEphemeralsError,
    NoNodeError,
    OperationTimeoutError,
    ZookeeperError,
)
from kazoo.exceptions import (
    NodeExistsError as ZkNodeExists,
)
from kazoo.exceptions import (
    NotEmptyError as ZkNotEmpty,
)
from kazoo.exceptions import (
    SessionExpiredError as ZkSessionExpired,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState, ZnodeStat
from kazoo.retry import KazooRetry

from taureau.common.errors import (
    BadVersionError,
    InvalidMetadataPathError,
    MetadataConnectionError,
    MetadataError,
    MetadataStoreClosedError,
    NodeExistsError,
    NotEmptyError,
    NotFoundError,
    SessionExpiredError,
)
from taureau.metadata.paths import ROOT, check_path, join
from taureau.metadata.store import MetadataStore, Stat, WatchCallback, WatchEvent, check_put
from taureau.metadata.zk_url import ZooKeeperUrl, parse_zk_url
from taureau.metadata.zk_watches import NodeState, diff

log = logging.getLogger(__name__)

# ZooKeeper drops the connection of a request over jute.maxbuffer (1 MiB less one byte by
# default, path and headers included): keep values a few KiB under it so the path fits.
MAX_VALUE_BYTES = 1024 * 1024 - 4096

# kazoo logs every refused connection attempt at WARNING; keep that out of a CLI's stderr
# (one line per error) unless the process configured logging, which still sees it.
_kazoo_log = logging.getLogger("taureau.metadata.kazoo")
_kazoo_log.addHandler(logging.NullHandler())

ZOOKEEPER_OWN = "zookeeper"  # ZooKeeper's own node under its root: not part of our tree


def _stat(zs: ZnodeStat) -> Stat:
    return Stat(zs.version, zs.ctime, zs.mtime, zs.ephemeralOwner != 0)


def _state(zs: ZnodeStat | None) -> NodeState | None:
    return None if zs is None else NodeState(zs.czxid, zs.version, zs.cversion)


@dataclass(slots=True)
class _Watched:
    callbacks: dict[int, WatchCallback] = field(default_factory=dict)
    state: NodeState | None = None
    armed: bool = False  # a first read set the baseline: later reads report differences
    busy: bool = False  # a read is in flight
    again: bool = False  # it fired during that read: read once more


# kazoo's own reconnect backoff grows to an hour: after a ZooKeeper restart of a few seconds the
# next attempt could come after the session had expired, losing every ephemeral node and watch
# for nothing. A second at most between attempts, as ZooKeeper's Java client does.
RECONNECT_MAX_DELAY_S = 1.0


class ZooKeeperMetadataStore(MetadataStore):
    """A MetadataStore on ZooKeeper; open with `await ZooKeeperMetadataStore.open(url)`.

    >>> store = await ZooKeeperMetadataStore.open("zk://127.0.0.1:2181/pulsar")
    """

    def __init__(
        self,
        url: ZooKeeperUrl,
        client: KazooClient,
        loop: asyncio.AbstractEventLoop,
        *,
        op_timeout_s: float,
        max_value_bytes: int,
    ) -> None:
        self.url = url
        self.max_value_bytes = max_value_bytes
        self._client = client
        self._loop = loop
        self._op_timeout_s = op_timeout_s
        self._prefix = "" if url.chroot == ROOT else url.chroot
        self._watches: dict[str, _Watched] = {}
        self._watch_ids = count()
        self._closed = False
        self._expired = False
        self._stopping: asyncio.Future[None] | None = None
        self._expiry_callbacks: list[Callable[[], None]] = []
        client.add_listener(self._on_state)

    @classmethod
    async def open(
        cls,
        url: str | ZooKeeperUrl,
        *,
        session_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        op_timeout_s: float = 30.0,
        max_value_bytes: int = MAX_VALUE_BYTES,
    ) -> ZooKeeperMetadataStore:
        """Connect (MetadataConnectionError if no server answers within connect_timeout_s)
        and make the chroot node if it is missing."""
        parsed = parse_zk_url(url) if isinstance(url, str) else url
        client = KazooClient(
            hosts=parsed.connect_string, timeout=session_timeout_s, logger=_kazoo_log,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=RECONNECT_MAX_DELAY_S),
        )
        try:
            await asyncio.to_thread(client.start, connect_timeout_s)
        except KazooTimeoutError:
            await asyncio.to_thread(_stop_quietly, client)
            raise MetadataConnectionError(
                f"ZooKeeper at {parsed.connect_string} did not answer within {connect_timeout_s:g}s"
            ) from None
        store = cls(
            parsed, client, asyncio.get_running_loop(), op_timeout_s=op_timeout_s,
            max_value_bytes=max_value_bytes,
        )
        if parsed.chroot != ROOT:
            try:
                await store._run(lambda: client.ensure_path_async(parsed.chroot), parsed.chroot)
            except BaseException:
                await store.close()
                raise
        return store

    @property
    def session_id(self) -> int:
        return int(self._client.client_id[0]) if self._client.client_id else 0

    @property
    def session_credentials(self) -> tuple[int, bytes] | None:
        """(session id, password): what a second client needs to take over (and so end)
        this session, as ZooKeeper's own tests expire a session."""
        return self._client.client_id

    # -- reads ------------------------------------------------------------------------------

    async def get(self, path: str) -> tuple[bytes, Stat] | None:
        self._check_open()
        zk = self._zk(check_path(path))
        try:
            value, zs = await self._run(lambda: self._client.get_async(zk), path)
        except NotFoundError:
            return None
        return bytes(value), _stat(zs)

    async def children(self, path: str) -> list[str]:
        self._check_open()
        zk = self._zk(check_path(path))
        try:
            names = await self._run(lambda: self._client.get_children_async(zk), path)
        except NotFoundError:
            return []
        if path == ROOT and not self._prefix:
            names = [n for n in names if n != ZOOKEEPER_OWN]
        return sorted(names)

    # -- changes ----------------------------------------------------------------------------

    async def put(
        self,
        path: str,
        value: bytes,
        expected_version: int | None = None,
        *,
        ephemeral: bool = False,
    ) -> Stat:
        self._check_open()
        check_put(path, value, expected_version, self.max_value_bytes)
        data, zk = bytes(value), self._zk(path)
        if expected_version is not None and expected_version >= 0:
            return _stat(await self._run(lambda: self._client.set_async(zk, data, expected_version), path))
        if expected_version == -1:
            return await self._create(path, zk, data, ephemeral)
        # Unconditional: update, or create; a concurrent create or delete makes us go round.
        for _ in range(10):
            try:
                return _stat(await self._run(lambda: self._client.set_async(zk, data, -1), path))
            except NotFoundError:
                pass
            try:
                return await self._create(path, zk, data, ephemeral)
            except NodeExistsError:
                pass
        raise MetadataError(f"{path}: created and deleted by others ten times while it was written")

    async def _create(self, path: str, zk: str, data: bytes, ephemeral: bool) -> Stat:
        _created, zs = await self._run(
            lambda: self._client.create_async(zk, data, ephemeral=ephemeral, makepath=True, include_data=True),
            path,
        )
        return _stat(zs)

    async def delete(self, path: str, expected_version: int | None = None) -> None:
        self._check_open()
        if check_path(path) == ROOT:
            raise InvalidMetadataPathError("the root node cannot be deleted")
        zk = self._zk(path)
        version = -1 if expected_version is None else expected_version
        await self._run(lambda: self._client.delete_async(zk, version), path)

    async def delete_recursive(self, path: str) -> None:
        self._check_open()
        if check_path(path) == ROOT:
            for name in await self.children(ROOT):
                await self._delete_tree(join(ROOT, name))
        else:
            await self._delete_tree(path)

    async def _delete_tree(self, path: str) -> None:
        zk = self._zk(path)
        for _ in range(10):  # a child made by someone else meanwhile: empty it again
            for name in await self.children(path):
                await self._delete_tree(join(path, name))
            try:
                await self._run(lambda: self._client.delete_async(zk, -1), path)
                return
            except NotFoundError:
                return
            except NotEmptyError:
                continue
        raise NotEmptyError(f"{path}: others kept adding children while it was deleted")

    # -- watches ----------------------------------------------------------------------------

    def watch(self, path: str, callback: WatchCallback) -> Callable[[], None]:
        check_path(path)
        if not callable(callback):
            raise TypeError("watch callback must be callable")
        self._check_open()
        entry = self._watches.get(path)
        if entry is None:
            entry = self._watches[path] = _Watched()
            # The first read is queued now, before any change this caller makes next, so
            # ZooKeeper orders the watch ahead of that change.
            self._start_read(path, entry)
        watch_id = next(self._watch_ids)
        entry.callbacks[watch_id] = callback

        def cancel() -> None:
            entry.callbacks.pop(watch_id, None)
            if not entry.callbacks and self._watches.get(path) is entry:
                # The watch set in ZooKeeper fires once more at most, then finds no entry.
                del self._watches[path]

        return cancel

    def _on_fire(self, event: Any) -> None:
        """kazoo's callback thread: a one-shot watch fired; re-read on the loop."""
        if event.path is None:
            return  # kazoo dropped its watches with the connection: _rearm_all sets them again
        path = self._unzk(event.path)
        try:
            self._loop.call_soon_threadsafe(self._fired, path)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            pass

    def _fired(self, path: str) -> None:
        entry = self._watches.get(path)
        if entry is None or self._closed or self._expired:
            return
        if entry.busy:
            entry.again = True
        else:
            self._start_read(path, entry)

    def _start_read(self, path: str, entry: _Watched) -> None:
        entry.busy = True
        zk = self._zk(path)
        # exists() arms a watch on a missing node; get_children() (which fails on a missing
        # node) arms the child watch and returns the stat with the child version.
        exists = self._future(self._client.exists_async(zk, watch=self._on_fire), path)
        listing = self._future(
            self._client.get_children_async(zk, watch=self._on_fire, include_data=True), path
        )
        self._loop.create_task(self._finish_read(path, entry, exists, listing))

    async def _finish_read(
        self, path: str, entry: _Watched, exists: asyncio.Future[Any], listing: asyncio.Future[Any]
    ) -> None:
        while True:
            entry.again = False
            try:
                # Bounded as every other operation is: a read whose answer never came would
                # keep `busy` set, every later firing would only mark it `again`, and the watch
                # would go silent. (The likely cause of a CI run where a watch stayed silent
                # after a server restart that dropped the connection twice, no read failing.)
                await asyncio.wait_for(exists, self._op_timeout_s)
                try:
                    _names, zs = await asyncio.wait_for(listing, self._op_timeout_s)
                except NotFoundError:
                    zs = None
            except (MetadataError, TimeoutError) as exc:
                entry.busy = False
                if not (self._closed or self._expired):
                    # A read lost with the connection may not have armed its watches: try
                    # again shortly, or the watch would go silent.
                    log.warning("watch on %s could not re-read the node (retrying in 1 s): %r", path, exc)
                    self._loop.call_later(1.0, self._fired, path)
                return
            if self._watches.get(path) is not entry:
                return
            state = _state(zs)
            events = diff(entry.state, state) if entry.armed else []
            entry.state, entry.armed = state, True
            for event in events:
                for callback in list(entry.callbacks.values()):
                    self._loop.call_soon(callback, event, path)
            if not entry.again:
                entry.busy = False
                return
            zk = self._zk(path)
            exists = self._future(self._client.exists_async(zk, watch=self._on_fire), path)
            listing = self._future(
                self._client.get_children_async(zk, watch=self._on_fire, include_data=True), path
            )

    # -- session ----------------------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        """kazoo's thread: LOST means the session expired (or we stopped it ourselves)."""
        if state == KazooState.LOST:
            try:
                self._loop.call_soon_threadsafe(self._session_lost)
            except RuntimeError:
                pass
        elif state == KazooState.SUSPENDED:
            log.warning("ZooKeeper connection to %s lost; reconnecting", self.url.connect_string)
        elif state == KazooState.CONNECTED:
            # kazoo forgets every watch when a connection drops (it tells each watcher with a
            # path-less event): re-arm them all once connected again; each re-read reports
            # what changed meanwhile.
            try:
                self._loop.call_soon_threadsafe(self._rearm_all)
            except RuntimeError:
                pass
        return None

    def _rearm_all(self) -> None:
        for path in list(self._watches):
            self._fired(path)

    def _session_lost(self) -> None:
        if self._closed or self._expired:
            return
        self._expired = True
        log.error("ZooKeeper session to %s expired: its ephemeral nodes are gone", self.url)
        watches, self._watches = self._watches, {}
        for path, entry in watches.items():
            for callback in list(entry.callbacks.values()):
                self._loop.call_soon(callback, WatchEvent.SESSION_EXPIRED, path)
        for told in self._expiry_callbacks:
            self._loop.call_soon(told)
        # kazoo would open a fresh session; a store whose ephemerals vanished must not
        # carry on as if nothing happened, so the client stops here.
        self._stopping = asyncio.ensure_future(asyncio.to_thread(_stop_quietly, self._client))

    def on_session_expired(self, callback: Callable[[], None]) -> None:
        self._expiry_callbacks.append(callback)

    @property
    def expired(self) -> bool:
        return self._expired

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._watches.clear()
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(asyncio.to_thread(_stop_quietly, self._client))
        await self._stopping

    # -- plumbing ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise MetadataStoreClosedError("metadata store is closed")
        if self._expired:
            raise SessionExpiredError(
                f"ZooKeeper session to {self.url} expired: its ephemeral nodes are gone; open a new store"
            )

    def _zk(self, path: str) -> str:
        return self._prefix + path if path != ROOT else (self._prefix or ROOT)

    def _unzk(self, zk: str) -> str:
        return zk[len(self._prefix) :] or ROOT

    def _future(self, result: Any, path: str) -> asyncio.Future[Any]:
        """An asyncio future settled (on the loop) when kazoo's `result` is."""
        future = self._loop.create_future()

        def settle(done: Any) -> None:
            if future.done():
                return
            try:
                future.set_result(done.get(block=False))
            except Exception as exc:
                future.set_exception(self._translate(exc, path))

        def on_done(done: Any) -> None:  # kazoo's completion thread
            try:
                self._loop.call_soon_threadsafe(settle, done)
            except RuntimeError:
                pass

        result.rawlink(on_done)
        return future

    async def _run(self, start: Callable[[], Any], path: str) -> Any:
        self._check_open()
        try:
            result = start()
        except KazooException as exc:
            raise self._translate(exc, path) from None
        future = self._future(result, path)
        try:
            return await asyncio.wait_for(future, self._op_timeout_s)
        except TimeoutError:
            raise MetadataConnectionError(
                f"{path}: ZooKeeper at {self.url.connect_string} did not answer within "
                f"{self._op_timeout_s:g}s (a change may or may not have been applied)"
            ) from None

    def _translate(self, exc: BaseException, path: str) -> BaseException:
        if isinstance(exc, NoNodeError):
            return NotFoundError(f"{path} does not exist")
        if isinstance(exc, ZkNodeExists):
            return NodeExistsError(f"{path} exists already")
        if isinstance(exc, ZkBadVersion):
            return BadVersionError(f"{path} is not at the version expected")
        if isinstance(exc, ZkNotEmpty):
            return NotEmptyError(f"{path} has children")
        if isinstance(exc, NoChildrenForEphemeralsError):
            return MetadataError(f"cannot create {path}: a parent is ephemeral and cannot have children")
        if isinstance(exc, ZkSessionExpired):
            self._loop.call_soon(self._session_lost)
            return SessionExpiredError(f"{path}: ZooKeeper session to {self.url} expired")
        if isinstance(exc, ConnectionClosedError) and self._closed:
            return MetadataStoreClosedError("metadata store is closed")
        if isinstance(exc, ConnectionLoss | ConnectionClosedError | OperationTimeoutError):
            return MetadataConnectionError(
                f"{path}: connection to ZooKeeper at {self.url.connect_string} lost "
                "(a change may or may not have been applied)"
            )
        if isinstance(exc, ZookeeperError | KazooException):
            return MetadataError(f"{path}: ZooKeeper refused: {type(exc).__name__} {exc}")
        return exc


def _stop_quietly(client: KazooClient) -> None:
    try:
        client.stop()
        client.close()
    except Exception:  # stopping is best effort: the session ends with the socket anyway
        log.debug("stopping the kazoo client failed", exc_info=True)
