"""Leases: renewal keeps state, a dead client's state is reclaimed, mapped state is flushed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from taureau.common import errors

LEASE_MS = 200  # expiry after lease + grace = 400 ms


def wait_for(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_renewing_client_keeps_state_and_closed_state_expires(make_cluster):
    cl = make_cluster(lease_ms=LEASE_MS)
    c = cl.client()
    ht = c.open_or_create_hash_table("/jobs/j1/kept")
    ht.put(b"k", b"v")
    c.open_or_create_queue("/jobs/j1/dropped")
    c.close("/jobs/j1/dropped")
    time.sleep(LEASE_MS * 4 / 1000)  # two full lease + grace periods
    assert ht.get(b"k") == b"v"
    assert not c.exists("/jobs/j1/dropped")
    assert c.exists("/jobs/j1")  # a live child keeps its directory alive


def test_renewing_a_directory_renews_descendants_and_ancestors(make_cluster):
    cl = make_cluster(lease_ms=LEASE_MS)
    c = cl.client()
    c.open_or_create_hash_table("/jobs/j2/a/b")
    c.close("/jobs/j2/a/b")  # nobody renews the leaf itself
    for _ in range(8):
        c.renew_path("/jobs/j2/a")
        time.sleep(LEASE_MS / 2000)
    assert c.exists("/jobs/j2/a/b")
    with pytest.raises(errors.PathNotFoundError):
        c.renew_path("/jobs/nope")


def test_dead_client_state_is_reclaimed_and_blocks_return_to_pool(make_cluster):
    cl = make_cluster(lease_ms=LEASE_MS)
    c = cl.client()
    free_before = c.stats()["blocks_free"]
    # A separate process creates state, fills it past one block, then dies without cleanup.
    code = f"""
import os
from taureau.state import StateClient
c = StateClient({cl.address!r})
ht = c.open_or_create_hash_table("/jobs/dead/ht")
ht.multi_put({{b"k%d" % i: b"v" * 200 for i in range(800)}})
print(c.status("/jobs/dead/ht")["blocks"], flush=True)
os._exit(0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout) >= 2
    assert c.stats()["blocks_free"] <= free_before - 2
    wait_for(lambda: not c.exists("/jobs/dead"), timeout=5)
    assert c.stats()["blocks_free"] == free_before
    # and a second job can use the same blocks
    ht = c.open_or_create_hash_table("/jobs/next/ht")
    ht.multi_put({b"k%d" % i: b"v" * 200 for i in range(800)})
    assert len(ht) == 800


def test_pinned_state_survives_expiry(make_cluster):
    cl = make_cluster(lease_ms=LEASE_MS)
    c = cl.client()
    ht = c.create_hash_table("/pinned/ht", pinned=True)
    ht.put(b"k", b"v")
    c.close("/pinned/ht")
    time.sleep(LEASE_MS * 3 / 1000)
    assert ht.get(b"k") == b"v"


def test_mapped_state_is_flushed_on_expiry_and_loads_again(make_cluster, tmp_path):
    cl = make_cluster(lease_ms=LEASE_MS)
    c = cl.client()
    free_before = c.stats()["blocks_free"]
    ht = c.create_hash_table("/jobs/m/ht", mapped=True, backing_path="local://flush/ht.dump")
    ht.multi_put({b"k%d" % i: b"v%d" % i for i in range(300)})
    c.close("/jobs/m/ht")
    wait_for(lambda: c.status("/jobs/m/ht")["state"] == "flushed")
    assert c.stats()["blocks_free"] == free_before  # its memory went back to the pool
    assert os.path.exists(tmp_path / "state" / "flush" / "ht.dump")
    again = c.open_hash_table("/jobs/m/ht")  # opening a flushed structure loads it
    assert again.multi_get([b"k%d" % i for i in range(300)]) == [b"v%d" % i for i in range(300)]
    assert c.status("/jobs/m/ht")["state"] == "active"
