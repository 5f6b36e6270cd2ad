"""What every Taureau server process shares: its data directory (owner-only, probed, locked),
its own storage stack, an ordered list of things to close, and a run-until-signalled loop."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable

from taureau.common.errors import StorageError, TaureauError
from taureau.common.memory import tune_allocator
from taureau.common.private_files import DIR_MODE, make_private_dirs, open_private
from taureau.common.stack_dump import install_stack_dumps
from taureau.metadata.claims import claim_ephemeral
from taureau.metadata.factory import open_metadata_store
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger.client import BookKeeperClient
from taureau.storage.ledger.cluster import ClusterLedgerClient
from taureau.storage.ledger.local import open_local_ledger_client
from taureau.storage.managed_ledger.api import ManagedLedgerConfig
from taureau.storage.managed_ledger.factory import ManagedLedgerFactory

log = logging.getLogger("taureau.node")

# The ephemeral node of the one standalone (state controller, functions worker) a ZooKeeper
# metadata store may have.
BROKER_CLAIM = "/brokers/exclusive"

# After SIGINT/SIGTERM the process is gone within this, stopped cleanly or not.
STOP_DEADLINE_S = 10.0

Closer = Callable[[], Awaitable[None]]


class Node:
    """Owns the close order: whatever starts appends its closer; `stop` runs them backwards."""

    def __init__(self) -> None:
        self._closers: list[Closer] = []
        self._ready_hooks: list[Callable[[], None]] = []
        self.fatal: str | None = None  # why the node stopped itself, if it did
        self.ledgers: BookKeeperClient | None = None  # set by open_storage

    def stop_for(self, reason: str) -> None:
        """Stop the process as SIGTERM would, then exit non-zero with `reason`."""
        if self.fatal is None:
            self.fatal = reason
            log.error("stopping: %s", reason)
            signal.raise_signal(signal.SIGTERM)

    def on_stop(self, closer: Closer) -> None:
        self._closers.append(closer)

    def on_ready(self, hook: Callable[[], None]) -> None:
        """`hook()` runs once the process is started and its collector tuned."""
        self._ready_hooks.append(hook)

    def ready(self) -> None:
        for hook in self._ready_hooks:
            hook()

    async def stop(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("error while stopping %s", closer)

    def prepare_data_dir(self, data_dir: str) -> str:
        """Make, tighten, probe and lock the data directory; its absolute path."""
        data_dir = os.path.abspath(data_dir)
        try:
            make_private_dirs(data_dir)
            _tighten(data_dir)
            probe = os.path.join(data_dir, ".write-probe")
            os.close(open_private(probe, os.O_WRONLY | os.O_CREAT))
            os.remove(probe)
        except OSError as exc:
            raise StorageError(f"data directory {data_dir} is not writable: {exc.strerror}") from None
        self._lock(data_dir)
        return data_dir

    def _lock(self, data_dir: str) -> None:
        """Hold an exclusive lock on the data directory for the life of the process: two
        processes appending to one journal and metadata log would corrupt both."""
        lock_path = os.path.join(data_dir, "LOCK")
        lock_file = os.fdopen(open_private(lock_path, os.O_RDWR | os.O_CREAT | os.O_APPEND), "a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "another process"
            lock_file.close()
            raise StorageError(f"data directory {data_dir} is in use by {holder}") from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"taureau pid {os.getpid()}\n")
        lock_file.flush()

        async def unlock() -> None:
            lock_file.close()  # closing releases the flock

        self.on_stop(unlock)

    async def open_storage(
        self, data_dir: str, metadata_url: str | None, *, fsync: bool, config: ManagedLedgerConfig,
        cache_budget_bytes: int | None = None, cursor_save_interval_s: float = 1.0,
        metadata_session_timeout_s: float = 10.0, remote_bookies: bool = False, exclusive: bool = True,
    ) -> tuple[MetadataStore, ManagedLedgerFactory]:
        """The metadata store, the bookies (one in this process, or with remote_bookies the
        `taureau bookie` processes registered in the store) and a managed-ledger factory."""
        store = await open_metadata_store(
            metadata_url, data_dir, fsync=fsync, session_timeout_s=metadata_session_timeout_s
        )
        self.on_stop(store.close)
        # As Pulsar's default zookeeperSessionExpiredPolicy (shutdown): what the session
        # registered is gone and others may have taken over, so this node must not go on.
        store.on_session_expired(lambda: self.stop_for(f"metadata store session expired ({metadata_url})"))
        if exclusive and metadata_url is not None and metadata_url.startswith("zk://"):
            # One standalone per metadata store: its state controller and functions worker
            # are single per cluster (brokers share topics through bundle ownership instead).
            await claim_ephemeral(
                store, BROKER_CLAIM, f"pid {os.getpid()} on {socket.gethostname()}".encode(),
                wait_s=metadata_session_timeout_s + 5, what="the broker role of this metadata store",
            )
        ledgers: BookKeeperClient
        if remote_bookies:
            ledgers = ClusterLedgerClient(
                store, add_timeout_s=config.bookie_add_timeout_s, read_timeout_s=config.bookie_read_timeout_s
            )
        else:
            ledgers = await open_local_ledger_client(data_dir, store, num_bookies=1, journal_fsync=fsync)
        self.on_stop(ledgers.close)
        self.ledgers = ledgers
        factory = ManagedLedgerFactory(
            store, ledgers, config, cache_budget_bytes=cache_budget_bytes, cursor_persist_interval_s=cursor_save_interval_s
        )
        self.on_stop(factory.close)
        return store, factory


def _tighten(data_dir: str) -> None:
    """A data directory made by an older version (0755) keeps every file under it from others."""
    mode = os.stat(data_dir).st_mode & 0o777
    if mode & 0o077:
        log.warning("data directory %s was mode %o: making it owner-only (700)", data_dir, mode)
        os.chmod(data_dir, DIR_MODE)


# Collector thresholds for a server: young collections ten times rarer than Python's default
# (700), and a full collection only after 100 middle ones. With the default, full collections
# of a broker's heap (topics, cursors, cached entries) paused the loop for 46-600 ms.
GC_THRESHOLDS = (10_000, 20, 100)


def tune_collector() -> None:
    """After start: what exists now lives as long as the process, so take it out of the
    collector's scans (gc.freeze), and use thresholds that fit a server."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run_until_signalled(name: str, node: Node, start: Callable[[], Awaitable[str]]) -> None:
    """Start, tune the collector and the allocator, print `<name> ready in Xs: <what start
    returned>`, run until SIGINT/SIGTERM, stop within STOP_DEADLINE_S."""
    started = time.monotonic()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
            _exit_if_not_stopped_within(name, STOP_DEADLINE_S)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    install_stack_dumps(loop)
    try:
        details = await start()
    except BaseException:
        await node.stop()
        raise
    tune_collector()
    tune_allocator()
    node.ready()
    print(f"{name} ready in {time.monotonic() - started:.2f}s: {details}", flush=True)
    await stop.wait()
    print(f"{name} shutting down", flush=True)
    await node.stop()
    if node.fatal is not None:
        raise TaureauError(node.fatal)


def _exit_if_not_stopped_within(name: str, seconds: float) -> None:
    """A stop that hangs (a peer that never lets go, a stuck request) must not keep the
    process alive: what is acknowledged is already durable, so exiting loses nothing."""

    def watchdog() -> None:
        print(f"{name} did not stop within {seconds:.0f}s; exiting now", file=sys.stderr, flush=True)
        os._exit(1)

    timer = threading.Timer(seconds, watchdog)
    timer.daemon = True
    timer.start()
