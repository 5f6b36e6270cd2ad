"""A functions worker as one member of a cluster of workers: it deploys exactly what the
leader assigns it (WorkerCluster), shares the packages it receives (SharedPackages), and
answers for instances that run elsewhere: one instance's calls with a redirect to its worker,
a function's status and stats gathered from every worker running part of it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import time
from typing import TYPE_CHECKING, Any

from taureau.common.errors import TaureauError
from taureau.functions.cluster.coordinator import WorkerCluster
from taureau.functions.cluster.gather import merged_stats, merged_status
from taureau.functions.cluster.packages import SharedPackages
from taureau.functions.cluster.peers import PeerError, Peers
from taureau.functions.cluster.scheduler import Assigned
from taureau.functions.deployment import Deployment, RemoteState
from taureau.functions.errors import FunctionElsewhereError, FunctionError, FunctionNotFoundError
from taureau.functions.packages import PackageRef
from taureau.functions.registry import FunctionRecord
from taureau.functions.state_table import StateTable
from taureau.functions.views import instance_metrics, instance_status
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger.api import LedgerClient

if TYPE_CHECKING:
    from taureau.functions.worker import FunctionWorker

log = logging.getLogger("taureau.functions.cluster")

HOLDER_TTL_S = 2.0


def _refs(record: FunctionRecord) -> list[PackageRef]:
    return [record.package, *([record.requirements] if record.requirements else [])]


class ClusterMember:
    def __init__(self, worker: FunctionWorker, store: MetadataStore, ledgers: LedgerClient, url: str,
                 quorum: tuple[int, int, int], *, claim_wait_s: float = 15.0) -> None:
        self._worker = worker
        self.worker_id = worker.config.worker_id
        self.cluster = WorkerCluster(store, worker.registry, self.worker_id, url, self.apply,
                                     claim_wait_s=claim_wait_s)
        self._packages = SharedPackages(store, ledgers, quorum)
        self._peers = Peers(worker.config.admin_token)
        self._holders: dict[str, tuple[str, float]] = {}  # fqfn -> (URL of instance 0's worker, until)

    async def start(self) -> None:
        await self.cluster.start()

    async def close(self) -> None:
        await self.cluster.close()
        await self._peers.close()

    async def changed(self) -> None:
        await self.cluster.request_reassign()

    # -- packages -----------------------------------------------------------------------------

    async def share(self, record: FunctionRecord) -> None:
        """Store the record's packages (already in the local store) for the other workers."""
        for ref in _refs(record):
            data = await asyncio.to_thread(self._worker.packages.read, ref)
            try:
                await self._packages.publish(ref.sha, data)
            except TaureauError as exc:  # e.g. too few bookies registered for the quorum
                raise FunctionError(f"cannot store the package for the other workers: {exc}") from None

    async def fetch_packages(self, record: FunctionRecord) -> None:
        store = self._worker.packages
        for ref in _refs(record):
            if os.path.exists(store.path(ref)):
                continue
            data = await self._packages.fetch(ref.sha)
            if ref is record.requirements:
                await asyncio.to_thread(store.put_requirements, data)
            else:
                await asyncio.to_thread(store.put, ref.filename, data)

    async def forget_packages(self, deleted: FunctionRecord) -> None:
        """Drop the deleted function's shared packages unless another function uses them."""
        used = {ref.sha for record in await self._worker.registry.load_all() for ref in _refs(record)}
        for ref in _refs(deleted):
            if ref.sha not in used:
                await self._packages.remove(ref.sha)

    # -- applying assignments -----------------------------------------------------------------

    async def apply(self, desired: dict[str, Assigned]) -> None:
        worker = self._worker
        for fqfn in [f for f in worker.deployments if f not in desired]:
            async with worker._lock(fqfn):
                deployment = worker.deployments.pop(fqfn, None)
                if deployment is not None:
                    log.info("%s: no longer assigned to this worker", fqfn)
                    await deployment.close()
        await asyncio.gather(*(self._apply_locked(fqfn, a) for fqfn, a in desired.items()))

    async def _apply_locked(self, fqfn: str, assigned: Assigned) -> None:
        async with self._worker._lock(fqfn):
            try:
                await self._apply_one(fqfn, assigned)
            except Exception as exc:  # retried at the next pass (RECHECK_S)
                log.warning("%s: cannot run its assigned instances %s: %s", fqfn, list(assigned.instances), exc)
                broken = self._worker.deployments.pop(fqfn, None)
                if broken is not None:
                    with contextlib.suppress(Exception):
                        await broken.close()

    async def _apply_one(self, fqfn: str, a: Assigned) -> None:
        worker = self._worker
        ids = frozenset(a.instances)
        current = worker.deployments.get(fqfn)
        if current is not None and current.record.node_version >= a.version:
            if current.assigned != ids and await self._reassign_in_place(current, ids):
                return
            if current.assigned == ids:
                return
        record = await worker.registry.get(fqfn)
        if record is None:
            log.warning("assigned function %s, which does not exist: ignored", fqfn)
            if current is not None:
                await worker.deployments.pop(fqfn).close()
            return
        if current is not None and _same_code(current.record, record) and (
                current.assigned == ids or await self._reassign_in_place(current, ids)):
            await worker.apply_record(current, record, "start/stop by an operator")
            return
        if current is not None:
            await worker.deployments.pop(fqfn).close()
        with worker._holding(_refs(record)):
            log.info("%s: running instances %s here", fqfn, sorted(ids))
            await worker._deploy(record, assigned=ids, remote_state=None if 0 in ids else self._state_forwarder(fqfn))

    async def _reassign_in_place(self, deployment: Deployment, ids: frozenset[int]) -> bool:
        """Run another set of instances without touching the others; False when the change
        moves what only a fresh deployment sets up (the schedule of instance 0)."""
        holds_first = 0 in ids
        if holds_first != deployment.holds_first:
            if deployment.config.schedule:
                return False
            if holds_first:  # the state table's writer moves here (fencing its previous one)
                deployment.table = await StateTable.open(self._worker._ledgers, deployment.config.fqfn)
            elif deployment.table is not None:
                table, deployment.table = deployment.table, None
                await table.close()
        deployment.assigned = ids
        deployment.remote_state = None if holds_first else self._state_forwarder(deployment.config.fqfn)
        await deployment.set_target(deployment.target, "assignment changed")
        return True

    def _state_forwarder(self, fqfn: str) -> RemoteState:
        async def forward(header: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
            return await self._remote_state(fqfn, header, blob)

        return forward

    async def _remote_state(self, fqfn: str, header: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        """An instance's state op, answered by the worker running instance 0 (the table's one
        writer). Its URL is kept for HOLDER_TTL_S, and looked up again after a failure."""
        try:
            url = await self._holder_url(fqfn)
            got = await self._peers.state_op(url, fqfn, header, blob)
            return dict(got["header"]), base64.b64decode(got["blob"])
        except (PeerError, FunctionError, KeyError, TypeError, ValueError) as exc:
            self._holders.pop(fqfn, None)
            return {"ok": False, "error": f"the function's state could not be reached: {exc}",
                    "kind": "FunctionError"}, b""

    async def _holder_url(self, fqfn: str) -> str:
        cached = self._holders.get(fqfn)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        holder = (await self.cluster.placement(fqfn)).get(0)
        url = (await self.cluster.workers()).get(holder or "")
        if holder is None or holder == self.worker_id or url is None:
            raise FunctionError(f"no worker runs instance 0 of {fqfn} now")
        self._holders[fqfn] = (url, now + HOLDER_TTL_S)
        return url

    # -- answering for other workers ----------------------------------------------------------

    async def elsewhere(self, fqfn: str, instance_id: int | None) -> FunctionError:
        """The error to answer a call this worker cannot serve: a redirect to the worker that can."""
        placement = await self.cluster.placement(fqfn)
        urls = await self.cluster.workers()
        if instance_id is None:  # a worker where an instance is meant to run
            record = await self._worker._record(fqfn)
            running = {i: w for i, w in placement.items()
                       if not record.all_stopped and i not in record.stopped and i < record.config.initial_instances}
            if record.config.autoscaled:
                running = placement  # scaled by its one worker, which wakes it from zero
            candidates = sorted({w for w in running.values() if w != self.worker_id and w in urls})
        else:
            holder = placement.get(instance_id)
            candidates = [holder] if holder is not None and holder != self.worker_id and holder in urls else []
        if candidates:
            chosen = random.choice(candidates)  # invocations spread over the workers running it
            return FunctionElsewhereError(f"{fqfn} is served by worker {chosen}", urls[chosen])
        await self._worker._record(fqfn)  # FunctionNotFoundError if there is no such function
        what = f"instance {instance_id} of {fqfn}" if instance_id is not None else fqfn
        return FunctionNotFoundError(f"{what} is not running on any worker (being assigned or deployed)")

    async def gather(self, fqfn: str, what: str) -> dict[str, Any]:
        record = await self._worker._record(fqfn)
        placement = await self.cluster.placement(fqfn)
        urls = await self.cluster.workers()
        local = self._worker.deployments.get(fqfn)
        if record.config.autoscaled and local is None:  # its scaling state lives where it runs
            raise await self.elsewhere(fqfn, None)
        entries: list[tuple[int, dict[str, Any]]] = []
        if local is not None:
            for s in local.supervisors.values():
                entries.append((s.instance_id, instance_metrics(s) if what == "stats" else
                                instance_status(s, self.worker_id)))
        remote = [(i, w) for i, w in placement.items() if w != self.worker_id and w in urls]
        answers = await asyncio.gather(*(self._peer_instance(urls[w], w, fqfn, i, what) for i, w in remote))
        entries += [(i, got) for (i, _), got in zip(remote, answers, strict=True) if got is not None]
        if what == "stats":
            return merged_stats(entries)
        target = local.target if local is not None and record.config.autoscaled else (
            0 if record.all_stopped else record.config.initial_instances)
        return merged_status(entries, local, target)

    async def _peer_instance(self, url: str, worker_id: str, fqfn: str, instance_id: int,
                             what: str) -> dict[str, Any] | None:
        try:
            return await self._peers.instance(url, fqfn, instance_id, what)
        except PeerError as exc:
            log.info("%s: instance %d at %s: %s", fqfn, instance_id, worker_id, exc)
            if what == "stats":
                return None
            return {"running": False, "state": "unreachable", "error": str(exc), "workerId": worker_id}

    async def restart_all(self, fqfn: str, local: Deployment | None) -> None:
        if local is not None:
            await local.restart(None)
        placement = await self.cluster.placement(fqfn)
        urls = await self.cluster.workers()
        failed = []
        for i, w in sorted(placement.items()):
            if w != self.worker_id and w in urls:
                try:
                    await self._peers.restart(urls[w], fqfn, i)
                except PeerError as exc:
                    failed.append(f"instance {i}: {exc}")
        if failed:
            raise FunctionError(f"some instances of {fqfn} were not restarted: {'; '.join(failed)}")


def _same_code(a: FunctionRecord, b: FunctionRecord) -> bool:
    return a.version == b.version and a.package == b.package and a.requirements == b.requirements
