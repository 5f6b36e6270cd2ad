"""One worker's part in the cluster of function workers, as Pulsar's membership manager,
leader service and runtime manager:

- it registers (`/functions/workers/<id>`, ephemeral, holding its URL);
- whoever holds the ephemeral `/functions/leader` computes everyone's assignments (the
  scheduler) and writes them, one node per worker; it recomputes when the set of workers
  changes, when a function changes (`/functions/reassign` is touched), and every few seconds;
  when the leader's session ends, the others race to take the node;
- every worker watches its own assignment node and hands what it holds to `apply`.

Nothing read from the store is trusted: a corrupt assignment node is logged and ignored (the
worker keeps what it runs; the leader rewrites it), an assignment for a worker that is not
registered is dropped by the leader, one for an unknown function by the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from taureau.common.errors import MetadataError, NodeExistsError, NotFoundError
from taureau.functions.cluster import assignments
from taureau.functions.cluster.paths import (
    ALONE,
    ASSIGNMENTS,
    LEADER,
    REASSIGN,
    REBALANCE,
    REBALANCED,
    WORKERS,
    assignment_path,
    worker_path,
)
from taureau.functions.cluster.scheduler import Assigned, Wanted, schedule
from taureau.functions.errors import FunctionError
from taureau.functions.registry import FunctionRecord, FunctionRegistry
from taureau.metadata.claims import claim_ephemeral
from taureau.metadata.store import MetadataStore, WatchEvent

log = logging.getLogger("taureau.functions.cluster")

RECHECK_S = 5.0  # the leader recomputes, and a worker re-applies its node, at least this often
MAX_WORKERS = 1000  # registrations read per pass

Apply = Callable[[dict[str, Assigned]], Awaitable[None]]


def wanted(record: FunctionRecord) -> Wanted:
    c = record.config
    if c.autoscaled:
        return Wanted(record.fqfn, record.node_version, max(c.max_instances or 1, 1), together=True)
    return Wanted(record.fqfn, record.node_version, c.parallelism)


class WorkerCluster:
    def __init__(self, store: MetadataStore, registry: FunctionRegistry, worker_id: str, url: str,
                 apply: Apply, *, claim_wait_s: float = 15.0) -> None:
        self.worker_id = worker_id
        self.url = url
        self._store = store
        self._registry = registry
        self._apply = apply
        self._claim_wait_s = claim_wait_s
        self.is_leader = False
        self._leader_wake = asyncio.Event()
        self._mine_wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._cancels: list[Callable[[], None]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    async def check_no_worker_alone(self) -> None:
        """FunctionError if a standalone's functions worker (which deploys every function)
        runs on this store: beside it, each function would run twice."""
        if await self._store.exists(ALONE) is not None:
            raise FunctionError(f"a taureau standalone with functions runs every function of this metadata store "
                                f"({ALONE}); start it with --no-functions to run function workers beside it")

    async def start(self) -> None:
        info = json.dumps({"workerId": self.worker_id, "url": self.url, "registeredMs": int(time.time() * 1000)})
        # A worker restarted after kill -9 waits for its previous session's node to expire.
        await claim_ephemeral(self._store, worker_path(self.worker_id), info.encode(),
                              wait_s=self._claim_wait_s, what=f"function worker id {self.worker_id}")
        self._cancels.append(self._store.watch(assignment_path(self.worker_id), self._on_mine))
        for path in (LEADER, WORKERS, REASSIGN, REBALANCE):
            self._cancels.append(self._store.watch(path, self._on_leader_input))
        self._tasks.append(asyncio.ensure_future(self._follow()))
        self._tasks.append(asyncio.ensure_future(self._lead()))
        log.info("function worker %s registered at %s", self.worker_id, self.url)

    async def close(self) -> None:
        for cancel in self._cancels:
            cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_mine(self, event: WatchEvent, path: str) -> None:
        self._mine_wake.set()

    def _on_leader_input(self, event: WatchEvent, path: str) -> None:
        self._leader_wake.set()

    async def request_reassign(self) -> None:
        """A function was created, changed or deleted: have the leader recompute now."""
        await self._store.put(REASSIGN, str(time.time()).encode())

    async def request_rebalance(self) -> None:
        """Pulsar's `functions-worker rebalance`: the leader places every instance anew, spread
        evenly over the live workers (instances that move restart on their new worker)."""
        await self._store.put(REBALANCE, str(time.time()).encode())

    # -- what the others read -----------------------------------------------------------------

    async def workers(self) -> dict[str, str]:
        """Live workers: id -> URL."""
        out: dict[str, str] = {}
        for worker_id in (await self._store.children(WORKERS))[:MAX_WORKERS]:
            found = await self._store.get(worker_path(worker_id))
            if found is None:
                continue
            try:
                out[worker_id] = str(json.loads(found[0])["url"])
            except (ValueError, KeyError, TypeError):
                log.warning("worker registration %s is unreadable: ignored", worker_id)
        return out

    async def placement(self, fqfn: str) -> dict[int, str]:
        """Instance id -> the live worker assigned it."""
        out: dict[int, str] = {}
        live = set(await self._store.children(WORKERS))
        for worker_id, held in (await self._read_all()).items():
            if worker_id in live and fqfn in held:
                for i in held[fqfn].instances:
                    out[i] = worker_id
        return out

    async def _read_all(self) -> dict[str, dict[str, Assigned]]:
        out: dict[str, dict[str, Assigned]] = {}
        for worker_id in (await self._store.children(ASSIGNMENTS))[:MAX_WORKERS]:
            found = await self._store.get(assignment_path(worker_id))
            if found is None:
                continue
            try:
                out[worker_id], dropped = assignments.decode(found[0])
            except assignments.AssignmentError as exc:
                log.warning("assignments of worker %s are corrupt (%s): ignored", worker_id, exc)
                continue
            for reason in dropped:
                log.warning("assignments of worker %s: entry %s ignored", worker_id, reason)
        return out

    # -- this worker's own assignments --------------------------------------------------------

    async def _follow(self) -> None:
        self._mine_wake.set()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._mine_wake.wait(), RECHECK_S)
            self._mine_wake.clear()
            try:
                mine = await self._read_mine()
                if mine is not None:
                    await self._apply(mine)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("applying the assignments of worker %s", self.worker_id)

    async def _read_mine(self) -> dict[str, Assigned] | None:
        """What this worker is assigned; None when its node cannot be read (keep what runs)."""
        found = await self._store.get(assignment_path(self.worker_id))
        if found is None:
            return {}
        try:
            mine, dropped = assignments.decode(found[0])
        except assignments.AssignmentError as exc:
            log.warning("my assignments (%s) are corrupt (%s): ignored until the leader rewrites them",
                        assignment_path(self.worker_id), exc)
            return None
        for reason in dropped:
            log.warning("my assignments: entry %s ignored", reason)
        return mine

    # -- the leader ---------------------------------------------------------------------------

    async def _lead(self) -> None:
        while True:
            try:
                if not self.is_leader:
                    await self._try_to_lead()
                if self.is_leader:
                    await self.assign_once()
            except asyncio.CancelledError:
                raise
            except MetadataError as exc:
                log.warning("function assignment pass failed: %s", exc)
            except Exception:
                log.exception("function assignment pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leader_wake.wait(), RECHECK_S)
            self._leader_wake.clear()

    async def _try_to_lead(self) -> None:
        try:
            await self._store.put(LEADER, self.worker_id.encode(), -1, ephemeral=True)
        except NodeExistsError:
            return
        self.is_leader = True
        log.info("function worker %s is the leader", self.worker_id)

    async def _rebalance_requested(self) -> int | None:
        """The version of a rebalance request no leader has served yet, if there is one."""
        requested = await self._store.get(REBALANCE)
        if requested is None:
            return None
        served = await self._store.get(REBALANCED)
        try:
            done = int(served[0]) if served is not None else -1
        except ValueError:
            log.warning("%s is unreadable: the pending rebalance is served", REBALANCED)
            done = -1
        return requested[1].version if requested[1].version != done else None

    async def assign_once(self) -> None:
        live = sorted(await self._store.children(WORKERS))[:MAX_WORKERS]
        records = await self._registry.load_all()
        stored = await self._read_all()
        current: dict[str, dict[int, str]] = {}
        for worker_id, held in stored.items():
            for fqfn, a in held.items():
                for i in a.instances:
                    current.setdefault(fqfn, {})[i] = worker_id
        rebalance = await self._rebalance_requested()
        if rebalance is not None:
            log.info("rebalancing every function instance over %d workers", len(live))
            current = {}
        computed = schedule([wanted(r) for r in records], live, current)
        for worker_id in live:
            data = assignments.encode(computed[worker_id])
            found = await self._store.get(assignment_path(worker_id))
            if found is None or found[0] != data:
                await self._store.put(assignment_path(worker_id), data)
        if rebalance is not None:  # served (a leader that dies before this serves it again)
            await self._store.put(REBALANCED, str(rebalance).encode())
        for worker_id in set(await self._store.children(ASSIGNMENTS)) - set(live):
            log.info("worker %s is gone: its assignments are dropped", worker_id)
            with contextlib.suppress(NotFoundError):
                await self._store.delete(assignment_path(worker_id))
