"""An entry given to the bookie as parts (the ledger client's header and the data) is stored as
their concatenation, byte for byte what a joined entry would have been: in the entry log, in
the journal (read back after a restart) and through the ledger client."""

from __future__ import annotations

import asyncio
import os

import pytest

from taureau.storage.bookie import Bookie, records
from taureau.storage.bookie.entry_log import EntryLog
from taureau.storage.bookie.files import OSFiles
from taureau.storage.bookie.journal import Journal, JournalPosition
from taureau.storage.ledger import format as fmt

pytestmark = pytest.mark.anyio


def test_a_record_in_parts_is_the_joined_record() -> None:
    parts = (b"head", memoryview(os.urandom(5000)), bytearray(b"tail"), b"")
    assert b"".join(records.encode_parts(3, 9, parts)) == records.encode(3, 9, b"".join(parts))


def test_pwrite_all_writes_the_parts_at_the_offset(tmp_path) -> None:
    files = OSFiles()
    handle = files.open(str(tmp_path / "f"))
    files.append(handle, b"0123456789")
    files.pwrite_all(handle, [b"ab", memoryview(b"cd"), b""], 10)
    files.pwrite_all(handle, [b"XY"], 2)
    assert files.pread(handle, 0, 100) == b"01XY456789abcd"
    assert files.size(handle) == 14
    files.close(handle)


def test_entry_log_takes_records_in_parts_small_and_large(tmp_path) -> None:
    log = EntryLog(OSFiles(), str(tmp_path), buffer_size=1024)
    log.open({}, {})
    datas = [(b"h" * 16, b"small"), (b"h" * 16, os.urandom(4096)), (b"h" * 16, b"x")]
    locations = [log.add(7, records.encode_parts(7, i, parts)) for i, parts in enumerate(datas)]
    log.flush()
    for i, (location, parts) in enumerate(zip(locations, datas, strict=True)):
        assert log.read(location) == (7, i, b"".join(parts))
    log.close()


async def test_entries_in_parts_read_back_identical_before_and_after_a_restart(tmp_path) -> None:
    big = os.urandom(1024 * 1024 + 3)
    entries = [fmt.encode_entry_parts(-1, 5, b"small"), fmt.encode_entry_parts(0, 5 + len(big), big)]
    joined = [fmt.encode_entry(-1, 5, b"small"), fmt.encode_entry(0, 5 + len(big), big)]
    bookie = Bookie(tmp_path, checkpoint_interval_s=None)
    await bookie.start()
    await bookie.add_entries(1, 0, entries)
    await bookie.add_entry(1, 2, (b"", memoryview(b"one"), b"two"))
    joined.append(b"onetwo")
    assert await bookie.read_entries(1, 0, 2) == joined
    await bookie._journal.close()  # a crash after the journal: only its replay has the entries
    bookie._entry_log.close()
    bookie._index.close()  # type: ignore[union-attr]
    again = Bookie(tmp_path, checkpoint_interval_s=None)
    await again.start()
    assert await again.read_entries(1, 0, 2) == joined
    await again.close()


async def test_a_part_that_is_not_bytes_is_refused(tmp_path) -> None:
    bookie = Bookie(tmp_path, checkpoint_interval_s=None)
    await bookie.start()
    with pytest.raises(TypeError):
        await bookie.add_entries(1, 0, [(b"head", "text")])  # type: ignore[list-item]
    await bookie.close()


async def test_journal_and_entry_log_take_a_record_as_any_bytes_like_or_as_parts(tmp_path) -> None:
    given = [
        records.encode(1, 0, b"bytes"),
        bytearray(records.encode(1, 1, b"bytearray")),
        memoryview(records.encode(1, 2, b"memoryview")),
        records.encode_parts(1, 3, (b"pa", memoryview(b"rts"))),
    ]
    journal = Journal(OSFiles(), str(tmp_path / "journal"))
    list(journal.replay(JournalPosition(0, 0)))
    await asyncio.gather(*(journal.add(record) for record in given))
    await journal.close()
    again = Journal(OSFiles(), str(tmp_path / "journal"))
    replayed = list(again.replay(JournalPosition(0, 0)))
    again._files.close(again._handle)  # no batch was added: no threads to stop
    expected = [(1, 0, b"bytes"), (1, 1, b"bytearray"), (1, 2, b"memoryview"), (1, 3, b"parts")]
    assert replayed == expected
    log = EntryLog(OSFiles(), str(tmp_path / "ledgers"))
    log.open({}, {})
    locations = [log.add(1, record) for record in given]
    log.flush()
    assert [log.read(location) for location in locations] == expected
    log.close()
