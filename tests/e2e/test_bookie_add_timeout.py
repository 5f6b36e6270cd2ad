"""The add and read timeouts on real `taureau bookie` processes: a bookie frozen by SIGSTOP
(alive to TCP, answering nothing) is replaced in the ensemble after the add timeout, and
reads go to the other replica after the read timeout, both far below the 30 s request
timeout that would otherwise stall them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest

from taureau.metadata.zookeeper import ZooKeeperMetadataStore
from taureau.storage.ledger import format as fmt
from taureau.storage.ledger.cluster import ClusterLedgerClient
from tests.e2e.bookies import running_bookies

pytestmark = pytest.mark.anyio

TIMEOUT_S = 2.0


def _data(i: int) -> bytes:
    return b"entry-%04d" % i


async def test_a_frozen_bookie_is_replaced_after_the_add_timeout_and_nothing_acked_is_lost(
    tmp_path_factory, zk_url
):
    with running_bookies(tmp_path_factory, zk_url, 3, prefix="frozen") as procs:
        store = await ZooKeeperMetadataStore.open(zk_url)
        client = ClusterLedgerClient(store, add_timeout_s=TIMEOUT_S, read_timeout_s=TIMEOUT_S)
        ledger = await client.create_ledger(2, 2, 2)
        # The first bookie of the ensemble: the one ranged and per-entry reads try first.
        victim = next(b for b in procs if b.bookie_id == ledger.metadata.ensemble[0])
        for i in range(5):
            assert await ledger.add_entry(_data(i)) == i
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            # Several adds in flight at once when the bookie stops answering: all wait on it.
            ids = await asyncio.gather(*(ledger.add_entry(_data(i)) for i in range(5, 10)))
            elapsed = time.monotonic() - started
            assert ids == list(range(5, 10))  # acknowledged in order
            assert TIMEOUT_S * 0.9 <= elapsed < 10.0, elapsed  # the add timeout, not the 30 s one
            for i in range(10, 15):
                assert await ledger.add_entry(_data(i)) == i  # the new ensemble, no wait

            stored = await store.get(fmt.ledger_path(ledger.ledger_id))
            assert stored is not None
            md = fmt.decode_metadata(stored[0])
            assert [first for first, _ in md.ensembles] == [0, 5]
            assert victim.bookie_id in md.ensembles[0][1]
            assert victim.bookie_id not in md.ensembles[1][1]
            assert len(md.ensembles[1][1]) == 2

            # Entries 0..4 are on the frozen bookie and one other; the read of each that
            # asks the frozen one first goes to the other after the read timeout.
            started = time.monotonic()
            assert await ledger.read_entries(0, 14) == [_data(i) for i in range(15)]
            assert time.monotonic() - started < 3 * TIMEOUT_S + 10.0
        finally:
            victim.proc.send_signal(signal.SIGCONT)
        # Its late answers to the adds it was replaced for are dropped; adds go on.
        await asyncio.sleep(1.0)
        for i in range(15, 20):
            assert await ledger.add_entry(_data(i)) == i
        await ledger.close()
        victim.kill()

        # Another client (a broker taking over) reads everything acknowledged without it.
        store2 = await ZooKeeperMetadataStore.open(zk_url)
        reader_client = ClusterLedgerClient(store2, add_timeout_s=TIMEOUT_S, read_timeout_s=TIMEOUT_S)
        reader = await reader_client.open_ledger(ledger.ledger_id)
        assert reader.last_add_confirmed == 19
        assert await reader.read_entries(0, 19) == [_data(i) for i in range(20)]
        await reader_client.close()
        await client.close()
        await store2.close()
        await store.close()


@pytest.mark.parametrize("verb", ["broker", "standalone"])
@pytest.mark.parametrize("flag", ["--bookie-add-timeout", "--bookie-read-timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_bookie_timeout_that_is_not_positive_exits_2_with_one_line(tmp_path, verb, flag, value):
    # Refused before anything connects: the store named is never reached.
    args = ["--metadata-store", "zk://127.0.0.1:1/x", "--data-dir", str(tmp_path), f"{flag}={value}"]
    if verb == "standalone":
        args.append("--remote-bookies")
    out = subprocess.run(
        [sys.executable, "-m", "taureau.cli.main", verb, *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"taureau {verb}: {flag} must be a positive number of seconds, not {float(value):g}"
    ]
