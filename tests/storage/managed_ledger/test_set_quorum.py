"""set_quorum: the E/Qw/Qa of the ledgers a managed ledger creates from then on (a namespace's
persistence policy), on three real local bookies; the current ledger keeps its own."""

from __future__ import annotations

import pytest

from taureau.common.errors import StorageArgumentError
from taureau.storage.ledger.local import open_local_ledger_client
from taureau.storage.managed_ledger import InitialPosition, ManagedLedgerConfig, ManagedLedgerFactory

pytestmark = pytest.mark.anyio


async def test_a_new_quorum_applies_from_the_next_ledger(store, tmp_path):
    client = await open_local_ledger_client(str(tmp_path), store, num_bookies=3, journal_fsync=False)
    factory = ManagedLedgerFactory(store, client, ManagedLedgerConfig(max_entries_per_ledger=2))
    try:
        ml = await factory.open("public/default/persistent/quorum")
        await ml.open_cursor("hold", InitialPosition.EARLIEST)  # its backlog keeps the first ledger
        first = await ml.add_entry(b"a")
        ml.set_quorum(3, 3, 2)
        second = await ml.add_entry(b"b")  # still the current ledger
        third = await ml.add_entry(b"c")  # the rollover's ledger
        assert first.ledger_id == second.ledger_id != third.ledger_id
        old, new = await client.get_metadata(first.ledger_id), await client.get_metadata(third.ledger_id)
        assert (len(old.ensemble), old.write_quorum, old.ack_quorum) == (1, 1, 1)
        assert (len(new.ensemble), new.write_quorum, new.ack_quorum) == (3, 3, 2)
        assert len(set(new.ensemble)) == 3
        assert await client.available_bookies() == 3
    finally:
        await factory.close()
        await client.close()


@pytest.mark.parametrize("quorum", [(2, 3, 1), (3, 2, 3), (1, 1, 0)], ids=["e-below-qw", "qw-below-qa", "qa-zero"])
async def test_a_bad_quorum_is_refused_and_the_config_kept(store, ledgers, quorum):
    factory = ManagedLedgerFactory(store, ledgers)
    try:
        ml = await factory.open("public/default/persistent/bad-quorum")
        with pytest.raises(StorageArgumentError):
            ml.set_quorum(*quorum)
        assert (ml.config.ensemble_size, ml.config.write_quorum, ml.config.ack_quorum) == (1, 1, 1)
        await ml.add_entry(b"still writable")
    finally:
        await factory.close()
