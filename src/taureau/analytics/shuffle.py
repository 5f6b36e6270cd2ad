"""The shuffle of map_reduce, run inside tasks: mappers write one entry per partition to the
partition's hash table and then mark themselves done; a reducer waits for every mapper's mark
(notifications on the job's `done` table) and reads its partition."""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Callable
from typing import Any

import cloudpickle

from taureau.analytics.errors import JobAbortedError
from taureau.analytics.space import get_blob, open_unrenewed, put_blob, shuffle_path
from taureau.state import HashTable, StateClient

ABORT = b"abort"  # the driver's mark in `done`: a mapper failed for good, reducers give up
RECHECK_S = 1.0  # reducers re-read the marks this often, in case a notification was dropped


def partition_of(key: Any, partitions: int) -> int:
    """A partition that every process computes alike (hash() of str differs per process)."""
    return zlib.crc32(pickle.dumps(key, protocol=5)) % partitions


def _table(client: StateClient, path: str) -> HashTable:
    return open_unrenewed(client, client.open_or_create_hash_table, path)


def done_path(job_dir: str) -> str:
    return f"{job_dir}/done"


def write_map_output(client: StateClient, job_dir: str, mapper: int, value: Any, partitions: int,
                     by_key: bool, partitioner: Callable[[Any, int], int] | None) -> int:  # fmt: skip
    """Write a mapper's output; returns how many records it wrote. Entries are upserts keyed
    by mapper, so a retried or speculative copy of a mapper rewrites the same entries."""
    if by_key:
        buckets: list[list[tuple[Any, Any]]] = [[] for _ in range(partitions)]
        place = partitioner or partition_of
        for key, item in value:
            buckets[place(key, partitions) % partitions].append((key, item))
        count = sum(map(len, buckets))
        payloads = [cloudpickle.dumps(b, protocol=5) for b in buckets]
    else:
        payloads, count = [cloudpickle.dumps(value, protocol=5)], 1
    for r, payload in enumerate(payloads):
        put_blob(_table(client, shuffle_path(job_dir, r)), str(mapper), payload)
    _table(client, done_path(job_dir)).upsert(str(mapper).encode(), b"1")
    return count


def wait_for_mappers(client: StateClient, job_dir: str, mappers: int) -> None:
    """Return once every mapper has marked itself done; JobAbortedError if the driver gave up."""
    path = done_path(job_dir)
    done = _table(client, path)
    missing = {str(m).encode() for m in range(mappers)}
    with client.listen(path, ops=["put", "upsert"]) as sub:  # before reading: no mark slips by

        def recheck() -> None:
            keys = [ABORT, *missing]
            for k, v in zip(keys, done.multi_get(keys), strict=True):
                if v is not None:
                    if k == ABORT:
                        raise JobAbortedError(f"a mapper of {job_dir} failed: {v.decode(errors='replace')}")
                    missing.discard(k)

        recheck()
        while missing:
            n = sub.get_notification(timeout=RECHECK_S)
            if n is None or n.data == ABORT:
                recheck()
            else:
                missing.discard(n.data)


def reduce_partition(client: StateClient, job_dir: str, fn: Callable[..., Any], partition: int, mappers: int,
                     by_key: bool) -> Any:  # fmt: skip
    """Run `fn` over a partition once its mappers are done: fn(key, values) per key (a dict of
    results) with reduce_by_key, else fn(list of map results in mapper order)."""
    wait_for_mappers(client, job_dir, mappers)
    table = _table(client, shuffle_path(job_dir, partition))
    outputs = [pickle.loads(get_blob(table, str(m))) for m in range(mappers)]
    if not by_key:
        return fn(outputs)
    groups: dict[Any, list[Any]] = {}
    for pairs in outputs:
        for key, item in pairs:
            groups.setdefault(key, []).append(item)
    return {key: fn(key, values) for key, values in groups.items()}
