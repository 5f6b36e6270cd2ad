"""Packages shared by the workers of a cluster, on a real (local) bookie and metadata store:
stored once by hash, read back whole, and a bad record or a copy that does not match its hash
refused with a clear error."""

from __future__ import annotations

import hashlib
import json

import pytest

from taureau.functions.cluster.packages import CHUNK_BYTES, SharedPackages
from taureau.functions.cluster.paths import PACKAGES
from taureau.functions.errors import FunctionCodeError
from taureau.metadata.factory import open_metadata_store
from taureau.storage.ledger.local import open_local_ledger_client


@pytest.fixture
async def shared(tmp_path):
    store = await open_metadata_store(None, tmp_path)
    ledgers = await open_local_ledger_client(tmp_path, store, num_bookies=1, journal_fsync=False)
    yield store, ledgers, SharedPackages(store, ledgers, (1, 1, 1))
    await ledgers.close()
    await store.close()


@pytest.mark.anyio
async def test_a_package_of_several_chunks_is_stored_once_and_read_back_whole(shared):
    store, _, packages = shared
    data = bytes(range(256)) * (CHUNK_BYTES * 5 // 256 + 7)  # over 5 chunks, more than one read
    sha = hashlib.sha256(data).hexdigest()
    await packages.publish(sha, data)
    first = await store.get(f"{PACKAGES}/{sha}")
    await packages.publish(sha, data)  # stored already: nothing new
    assert (await store.get(f"{PACKAGES}/{sha}"))[1].version == first[1].version
    assert json.loads(first[0])["chunks"] == 6
    assert await packages.fetch(sha) == data
    await packages.remove(sha)
    assert await store.get(f"{PACKAGES}/{sha}") is None
    with pytest.raises(FunctionCodeError, match="not in the cluster's package store"):
        await packages.fetch(sha)


@pytest.mark.anyio
async def test_a_bad_record_or_a_copy_that_does_not_match_is_refused(shared):
    store, _, packages = shared
    data = b"def process(x):\n    return x\n"
    sha = hashlib.sha256(data).hexdigest()
    await packages.publish(sha, data)
    await store.put(f"{PACKAGES}/{'0' * 64}", (await store.get(f"{PACKAGES}/{sha}"))[0])  # another hash's ledger
    with pytest.raises(FunctionCodeError, match="does not match its hash"):
        await packages.fetch("0" * 64)
    await store.put(f"{PACKAGES}/{'1' * 64}", b"{not json")
    with pytest.raises(FunctionCodeError, match="unreadable record"):
        await packages.fetch("1" * 64)
    await store.put(f"{PACKAGES}/{'2' * 64}", json.dumps({"ledgerId": "x", "size": 1, "chunks": 1}).encode())
    with pytest.raises(FunctionCodeError, match="unreadable record"):
        await packages.fetch("2" * 64)
    await store.put(f"{PACKAGES}/{'3' * 64}", json.dumps({"ledgerId": 987654, "size": 1, "chunks": 1}).encode())
    with pytest.raises(FunctionCodeError, match="cannot read ledger 987654"):
        await packages.fetch("3" * 64)
    assert await packages.fetch(sha) == data  # the good one is untouched
