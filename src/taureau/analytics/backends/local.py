"""Warm local worker processes: the embedded executor's backend.

Each worker is a `python -m taureau.analytics.worker_main` child on a socket pair. It holds up
to `depth` batches (one running, the next already sent, so it never idles between batches).
One I/O thread reads every worker's outcomes; a worker whose socket reaches EOF died, and its
unreported calls go back to the scheduler as lost (it retries them on another worker) while a
replacement starts."""

from __future__ import annotations

import itertools
import logging
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from taureau.analytics import wire
from taureau.analytics.backends.base import BackendSink
from taureau.analytics.errors import BackendError, WorkerLostError
from taureau.analytics.worker_main import READY

log = logging.getLogger("taureau.analytics.local")

START_TIMEOUT_S = 60.0


@dataclass(eq=False)
class _Worker:
    name: str
    proc: subprocess.Popen
    conn: Connection
    ready: bool = False
    batches: dict[int, int] = field(default_factory=dict)  # batch id -> calls not reported yet
    exclusive: bool = False
    dead: bool = False
    cancelled: bool = False  # killed on purpose (the losers of speculation)


class LocalBackend:
    name = "local"
    waiting_tasks_ok = True
    streams_outcomes = True

    def __init__(self, workers: int | None = None, depth: int = 2, short_depth: int = 4, **_: object) -> None:
        self.slots = workers or os.cpu_count() or 1
        if self.slots < 1:
            raise BackendError("workers must be at least 1")
        self.depth = depth
        # Short batches queue deeper: a worker then never waits a round trip for the next one
        # (which would take longer than the batch), and a job of tiny calls goes out at once.
        # Long ones stay at `depth`, so a slow worker does not sit on work others could take.
        self.short_depth = max(depth, short_depth)
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._names = itertools.count(0)
        self._closing = False
        self._sink: BackendSink | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._outgoing: deque[tuple[_Worker, bytes]] = deque()  # accepted, not written yet (depth bounds it)
        self._send_lock = threading.Lock()  # writes in the order batches were accepted
        self._thread: threading.Thread | None = None

    def start(self, sink: BackendSink, state_address: str) -> None:
        self._sink = sink
        self._workers = [self._spawn() for _ in range(self.slots)]
        deadline = time.monotonic() + START_TIMEOUT_S
        for w in self._workers:  # warm: every worker has imported the runner before we return
            if not w.conn.poll(max(deadline - time.monotonic(), 0)) or w.conn.recv_bytes() != READY:
                self.close()
                raise BackendError(f"worker {w.name} did not start (exit code {w.proc.poll()})")
            w.ready = True
        self._thread = threading.Thread(target=self._io_loop, name="analytics-local-io", daemon=True)
        self._thread.start()

    def _spawn(self) -> _Worker:
        ours, theirs = socket.socketpair()
        name = f"local-{next(self._names)}"
        env = dict(os.environ)
        # The worker imports what the driver can (tests and scripts run from their own folder).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        proc = subprocess.Popen([sys.executable, "-m", "taureau.analytics.worker_main", str(theirs.fileno()), name],
                                pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL)  # fmt: skip
        theirs.close()
        return _Worker(name, proc, Connection(ours.detach()))

    def workers(self) -> list[tuple[str, int]]:
        """(name, pid) of each live worker (tests kill one)."""
        with self._lock:
            return [(w.name, w.proc.pid) for w in self._workers if not w.dead]

    def try_submit(self, batch: wire.Batch, *, exclusive: bool = False, avoid: str | None = None,
                   short: bool = False) -> str | None:  # fmt: skip
        with self._lock:
            best: _Worker | None = None
            for w in self._workers:
                if w.dead or not w.ready or w.exclusive or w.name == avoid:
                    continue
                load = len(w.batches)
                if (exclusive and load) or load >= (self.short_depth if short else self.depth):
                    continue
                if best is None or load < len(best.batches):
                    best = w
            if best is None:
                return None
            self._outgoing.append((best, wire.encode_batch(batch)))
            best.batches[batch.batch_id] = len(batch.call_ids)
            best.exclusive = exclusive
            return best.name

    def flush(self) -> None:
        """Write the batches try_submit accepted (the scheduler calls this without its lock)."""
        with self._send_lock:
            by_worker: dict[_Worker, list[bytes]] = {}
            while self._outgoing:
                w, data = self._outgoing.popleft()
                by_worker.setdefault(w, []).append(data)
            for w, batches in by_worker.items():  # one message per worker: one wake-up for all of them
                try:
                    w.conn.send_bytes(wire.encode_batches(batches))
                except OSError:
                    pass  # it died: the I/O thread sees its EOF and reports its batches lost

    def cancel(self, batch_id: int) -> bool:
        """Stop a batch whose calls all finished elsewhere (the losers of speculation): its
        worker is killed if it runs the batch now; its other batches are reported lost and run
        again elsewhere. A batch still waiting in a worker is left: it will run quickly."""
        with self._lock:
            for w in self._workers:
                if not w.dead and w.batches and next(iter(w.batches)) == batch_id:
                    w.cancelled = True
                    w.proc.kill()
                    return True
        return False

    def _io_loop(self) -> None:
        sink = self._sink
        assert sink is not None
        # One selector for the loop's life, its workers re-registered only when they change
        # (a selector made per wait costs more than reading a small message).
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        watched: dict[_Worker, None] = {}
        while not self._closing:
            with self._lock:
                live = [w for w in self._workers if not w.dead]
            if live != list(watched):
                for w in watched:
                    selector.unregister(w.conn)
                watched = dict.fromkeys(live)
                for w in live:
                    selector.register(w.conn, selectors.EVENT_READ, w)
            for key, _ in selector.select(timeout=1.0):
                w = key.data
                if w is None or w.dead:
                    continue
                try:
                    data = w.conn.recv_bytes()
                except (EOFError, OSError):
                    selector.unregister(w.conn)  # before _lost closes it (a closed one has no fd)
                    del watched[w]
                    self._lost(w, sink)
                    continue
                if data == READY:
                    with self._lock:
                        w.ready = True
                    sink.worker_joined()  # calls may be waiting for it: no batch end will say so
                    continue
                self._report(w, wire.decode_groups(data), sink)

    def _report(self, w: _Worker, groups: list[wire.Group], sink: BackendSink) -> None:
        finished = []
        with self._lock:
            for g in groups:
                left = w.batches.get(g.batch_id, 0) - len(g.ends)
                if left <= 0:
                    w.batches.pop(g.batch_id, None)
                    w.exclusive = False
                    finished.append(g.batch_id)
                else:
                    w.batches[g.batch_id] = left
        for g in groups:
            sink.outcomes(g)
        for batch_id in finished:
            sink.batch_done(batch_id, None)

    def _lost(self, w: _Worker, sink: BackendSink) -> None:
        with self._lock:
            w.dead = True
            lost = list(w.batches)
            w.batches.clear()
            self._workers.remove(w)
            if not self._closing:
                self._workers.append(self._spawn())  # joins when its READY arrives
        w.conn.close()
        code = w.proc.wait()
        if w.cancelled:
            log.debug("worker %s stopped: it ran only calls finished elsewhere", w.name)
        elif not self._closing:
            log.warning("worker %s died (exit code %s); %d batches go elsewhere", w.name, code, len(lost))
        for batch_id in lost:
            sink.batch_done(batch_id, WorkerLostError(f"worker {w.name} died (exit code {code}) while running it"))

    def close(self) -> None:
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for w in workers:
            w.conn.close()  # EOF: the worker exits after its current call
        for w in workers:
            try:
                w.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                w.proc.kill()  # a call that does not return must not keep the driver from exiting
                w.proc.wait()
        self._wake_r.close()
        self._wake_w.close()
