"""The driver's view of results kept in the state store: how many bytes each results segment
holds, and spilling whole finished segments to durable storage (the state layer's dump to
its backing store) when the job's budget is passed or the pool is full. A spilled segment is
loaded back when one of its results is read. Dumps are deleted with their segment: once all its
results were read, at clean() and at close; and by the state store itself with the executor's
meta table (their owner) when a dead driver's lease expires."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from taureau.analytics.space import SEGMENT_CALLS, get_blob, results_path, segment_of
from taureau.common import errors
from taureau.state import StateClient

log = logging.getLogger("taureau.analytics.results")


@dataclass(eq=False, slots=True)
class _Segment:
    path: str
    dump: str
    size: int = 0
    stored: int = 0  # results written to it
    read: int = 0  # results fetched from it (each once: a future keeps its value)
    spilled: bool = False  # its dump is the only copy
    dumped: bool = False  # a dump exists (a segment loaded back need not be written again)


class ResultStore:
    def __init__(self, client: StateClient, executor_id: str, budget: int | None,
                 finished: Callable[[str], bool], owner: str) -> None:  # fmt: skip
        self.finished = finished  # is every call of this segment over?
        self.client = client
        self.executor_id = executor_id
        # Dumps belong to this structure (the executor's meta table): when the driver dies and
        # its lease expires, the state store deletes them with it.
        self.owner = owner
        self.budget = budget
        self._lock = threading.Lock()  # a segment is never read while it is being spilled
        self._segments: dict[str, _Segment] = {}
        self.in_memory = 0
        self.spills = 0

    def stored(self, job_dir: str, job_id: str, call_id: int, size: int) -> None:
        """A worker stored a result of `size` bytes for `call_id`."""
        seg = segment_of(call_id)
        path = results_path(job_dir, seg)
        with self._lock:
            s = self._segments.get(path)
            if s is None:
                dump = f"local://analytics/{self.executor_id}/{job_id}/results-{seg}.dump"
                s = self._segments[path] = _Segment(path, dump)
            s.size += size
            s.stored += 1
            self.in_memory += size

    def over_budget(self) -> bool:
        return self.budget is not None and self.in_memory > self.budget

    def spill(self, finished: dict[str, bool], target: int) -> int:
        """Spill finished segments (oldest first) until at most `target` bytes stay in memory;
        `finished` says, per segment path, whether every call of it is over. Returns the bytes freed."""
        freed = 0
        with self._lock:
            for s in list(self._segments.values()):
                if self.in_memory - freed <= target:
                    break
                if s.spilled or not s.size or not finished.get(s.path):
                    continue
                if not s.dumped:
                    self.client.dump(s.path, s.dump, owner=self.owner)
                    s.dumped = True
                self.client.remove(s.path)
                s.spilled = True
                freed += s.size
                self.spills += 1
                log.info("spilled %s (%d bytes) to %s", s.path, s.size, s.dump)
            self.in_memory -= freed
        return freed

    def read(self, job_dir: str, call_id: int, key: str) -> bytes:
        path = results_path(job_dir, segment_of(call_id))
        with self._lock:
            s = self._segments.get(path)
            if s is not None and s.spilled:
                self.client.load(path, s.dump)
                s.spilled = False
                self.in_memory += s.size
            table = self.client.open_hash_table(path)
            self.client.close(path)  # the executor directory's lease keeps it, not this handle
            data = get_blob(table, key)
            if s is not None:
                s.read += 1
                if s.read >= s.stored and self.finished(path):  # all read, none to come: free it
                    self.client.remove(path)
                    del self._segments[path]
                    self.in_memory -= s.size
                    self._drop_dump(s)
            return data

    def segments(self) -> list[str]:
        with self._lock:
            return list(self._segments)

    def forget_job(self, job_dir: str) -> None:
        """The job's data is being removed (clean()): forget its segments, delete their dumps."""
        self._forget(lambda path: path.startswith(job_dir + "/"))

    def forget_all(self) -> None:
        """The executor is closing: every dump it wrote goes."""
        self._forget(lambda path: True)

    def _forget(self, which: Callable[[str], bool]) -> None:
        with self._lock:
            for path in [p for p in self._segments if which(p)]:
                s = self._segments.pop(path)
                if not s.spilled:
                    self.in_memory -= s.size
                self._drop_dump(s)

    def _drop_dump(self, s: _Segment) -> None:
        if not s.dumped:
            return
        try:
            self.client.drop_dump(s.dump)
            s.dumped = False
        except errors.StateError as exc:  # unreachable store: the file stays, the job goes on
            log.warning("could not delete the spill %s: %s", s.dump, exc)


def segment_calls(segment_path: str) -> range:
    seg = int(segment_path.rsplit("/", 1)[1])
    return range(seg * SEGMENT_CALLS, (seg + 1) * SEGMENT_CALLS)



