"""WorkerCluster on a real ZooKeeper (one session per worker): registration, one leader,
instances spread, moved when a worker's session ends, a new leader when the leader's ends,
and bad assignment nodes logged and ignored."""

from __future__ import annotations

import asyncio
import logging

import pytest

from taureau.functions.cluster import assignments
from taureau.functions.cluster.coordinator import WorkerCluster
from taureau.functions.cluster.paths import LEADER, assignment_path
from taureau.functions.cluster.scheduler import Assigned
from taureau.functions.config import FunctionConfig
from taureau.functions.packages import PackageRef
from taureau.functions.registry import FunctionRecord, FunctionRegistry
from taureau.metadata.zookeeper import ZooKeeperMetadataStore


class Member:
    """One worker's cluster part, recording every set of assignments it is handed."""

    def __init__(self, store: ZooKeeperMetadataStore, worker_id: str) -> None:
        self.store = store
        self.seen: list[dict[str, Assigned]] = []
        self.cluster = WorkerCluster(store, FunctionRegistry(store), worker_id, f"http://{worker_id}", self._apply,
                                     claim_wait_s=5)

    async def _apply(self, desired: dict[str, Assigned]) -> None:
        self.seen.append(desired)

    @property
    def held(self) -> dict[str, Assigned]:
        return self.seen[-1] if self.seen else {}

    @classmethod
    async def start(cls, zk_url: str, worker_id: str) -> Member:
        member = cls(await ZooKeeperMetadataStore.open(zk_url, session_timeout_s=2.0), worker_id)
        await member.cluster.start()
        return member

    async def close(self) -> None:
        await self.cluster.close()
        await self.store.close()


async def _create(store, name: str, **fields) -> FunctionRecord:
    config = FunctionConfig.from_dict({"tenant": "public", "namespace": "default", "name": name,
                                       "className": "f.F", "inputs": ["in"], "py": "f.py", **fields})
    record = FunctionRecord(config, PackageRef("0" * 64, "f.py"))
    await FunctionRegistry(store).create(record)
    return record


async def _until(check, what: str, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"{what} did not happen"
        await asyncio.sleep(0.05)


def _ids(member: Member, fqfn: str) -> set[int]:
    return set(member.held[fqfn].instances) if fqfn in member.held else set()


@pytest.mark.anyio
async def test_instances_spread_move_off_a_dead_worker_and_a_new_leader_takes_over(zk_url):
    a = await Member.start(zk_url, "a:1")
    b = await Member.start(zk_url, "b:1")
    try:
        await _until(lambda: a.cluster.is_leader or b.cluster.is_leader, "a leader")
        assert not (a.cluster.is_leader and b.cluster.is_leader)
        assert sorted(await a.cluster.workers()) == ["a:1", "b:1"]
        await _create(a.store, "f", parallelism=4)
        await a.cluster.request_reassign()
        fqfn = "public/default/f"
        await _until(lambda: len(_ids(a, fqfn)) == 2 and len(_ids(b, fqfn)) == 2, "two instances each")
        assert _ids(a, fqfn) | _ids(b, fqfn) == {0, 1, 2, 3}
        placement = await b.cluster.placement(fqfn)
        assert sorted(placement) == [0, 1, 2, 3] and set(placement.values()) == {"a:1", "b:1"}

        leader, other = (a, b) if a.cluster.is_leader else (b, a)
        await leader.close()  # its session ends: its node and the leadership go
        await _until(lambda: other.cluster.is_leader, "the other taking the lead")
        await _until(lambda: _ids(other, fqfn) == {0, 1, 2, 3}, "every instance on the live worker")
        assert (await other.store.get(LEADER))[0] == other.cluster.worker_id.encode()
        assert await other.store.get(assignment_path(leader.cluster.worker_id)) is None  # dropped
    finally:
        for m in (a, b):
            if not m.store._closed:
                await m.close()


@pytest.mark.anyio
async def test_bad_assignment_nodes_are_logged_and_ignored(zk_url, caplog):
    caplog.set_level(logging.WARNING, logger="taureau.functions.cluster")
    a = await Member.start(zk_url, "a:1")
    try:
        await _until(lambda: a.cluster.is_leader, "the leader")
        await _create(a.store, "g", parallelism=2)
        await a.cluster.request_reassign()
        fqfn = "public/default/g"
        await _until(lambda: _ids(a, fqfn) == {0, 1}, "both instances")
        seen = len(a.seen)

        # A corrupt node of its own: logged, and what runs is kept (no empty set applied).
        await a.store.put(assignment_path("a:1"), b"{not json")
        await _until(lambda: "are corrupt" in caplog.text, "the warning")
        assert all(_ids_of(s, fqfn) == {0, 1} for s in a.seen[seen:])
        # ... and the leader rewrites it at its next pass.
        await a.cluster.assign_once()
        found = await a.store.get(assignment_path("a:1"))
        assert assignments.decode(found[0])[0][fqfn].instances == (0, 1)

        # Assignments for a worker that is not registered: its instances are not taken from
        # the live one, and the leader deletes the node.
        ghost = assignments.encode({fqfn: Assigned(0, (0, 1)), "public/default/none": Assigned(0, (0,))})
        await a.store.put(assignment_path("ghost:9"), ghost)
        await a.cluster.assign_once()
        assert await a.store.get(assignment_path("ghost:9")) is None
        await _until(lambda: _ids(a, fqfn) == {0, 1}, "the instances staying")
        assert "public/default/none" not in a.held

        # An entry for an unknown function in its own node reaches apply (the worker ignores
        # it, see member.py); a bad entry is dropped and named.
        await a.store.put(assignment_path("a:1"), b'{"functions": {"public/default/g": {"version": 0, '
                                                  b'"instances": [0, 1]}, "bad": {"version": -1}}}')
        await _until(lambda: "entry 'bad'" in caplog.text, "the dropped entry named")
        assert a.cluster.is_leader and not a.cluster._tasks[0].done() and not a.cluster._tasks[1].done()
    finally:
        await a.close()


def _ids_of(held: dict[str, Assigned], fqfn: str) -> set[int]:
    return set(held[fqfn].instances) if fqfn in held else set()


@pytest.mark.anyio
async def test_a_rebalance_spreads_every_instance_anew_and_is_served_once(zk_url):
    a = await Member.start(zk_url, "a:1")
    members = [a]
    try:
        await _until(lambda: a.cluster.is_leader, "the leader")
        await _create(a.store, "h", parallelism=4)
        await a.cluster.request_reassign()
        fqfn = "public/default/h"
        await _until(lambda: _ids(a, fqfn) == {0, 1, 2, 3}, "all on the only worker")
        b = await Member.start(zk_url, "b:1")
        members.append(b)
        await a.cluster.assign_once()
        assert assignments.decode((await a.store.get(assignment_path("b:1")))[0])[0] == {}  # joining moves nothing
        await b.cluster.request_rebalance()  # asked at any worker
        await _until(lambda: len(_ids(a, fqfn)) == 2 and len(_ids(b, fqfn)) == 2, "two each")
        before = {w: (await a.store.get(assignment_path(w)))[0] for w in ("a:1", "b:1")}
        await a.cluster.assign_once()  # served: a later pass keeps the placement
        assert {w: (await a.store.get(assignment_path(w)))[0] for w in ("a:1", "b:1")} == before
    finally:
        for m in members:
            await m.close()
