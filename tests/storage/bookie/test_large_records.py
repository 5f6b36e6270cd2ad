"""Large records skip the copies small ones go through: the entry log writes a record as large
as its buffer straight to the file, and the journal hands its batch to pwritev as it is."""

from __future__ import annotations

import itertools
import os

from taureau.storage.bookie import records
from taureau.storage.bookie.entry_log import EntryLog
from taureau.storage.bookie.files import OSFiles
from taureau.testing.crash_files import CrashFiles


def test_append_all_writes_the_parts_in_order_past_the_iovec_limit(tmp_path) -> None:
    files = OSFiles()
    handle = files.open(str(tmp_path / "f"))
    files.append(handle, b"head")
    parts = [bytes([i % 251]) * (i % 7) for i in range(3000)]  # more parts than IOV_MAX, some empty
    assert files.append_all(handle, parts) == 4
    assert files.size(handle) == 4 + sum(map(len, parts))
    assert files.pread(handle, 0, files.size(handle)) == b"head" + b"".join(parts)
    files.close(handle)


def test_the_default_append_all_is_one_append(tmp_path) -> None:
    files = CrashFiles()
    files.makedirs(str(tmp_path))
    handle = files.open(str(tmp_path / "f"))
    assert files.append_all(handle, [b"ab", b"", b"cd"]) == 0
    assert files.pread(handle, 0, 10) == b"abcd"


def test_entry_log_reads_back_records_around_one_larger_than_its_buffer(tmp_path) -> None:
    log = EntryLog(OSFiles(), str(tmp_path), buffer_size=1024)
    log.open({}, {})
    datas = [b"a" * 10, os.urandom(4096), b"b" * 20, os.urandom(1024), b"c"]
    locations = [log.add(7, records.encode(7, i, data)) for i, data in enumerate(datas)]
    for i, (location, data) in enumerate(zip(locations, datas, strict=True)):
        assert log.read(location) == (7, i, data)
    log.flush()
    for i, (location, data) in enumerate(zip(locations, datas, strict=True)):
        assert log.read(location) == (7, i, data)
    log.close()


class WritebackFiles(OSFiles):
    def __init__(self) -> None:
        self.writebacks: list[tuple[int, int]] = []

    def start_writeback(self, handle, offset: int, size: int) -> None:
        self.writebacks.append((offset, size))
        super().start_writeback(handle, offset, size)


def test_every_range_the_entry_log_writes_has_its_writeback_started(tmp_path) -> None:
    """Buffered flushes and records written as they are alike: the writebacks cover the file
    from its start to its end, each byte once, so a checkpoint's fsync has little left."""
    files = WritebackFiles()
    log = EntryLog(files, str(tmp_path), buffer_size=1024)
    log.open({}, {})
    start = log.sizes()[log.current]  # the log's header, written when it was created
    for i, data in enumerate([b"a" * 300, b"b" * 300, b"c" * 600, os.urandom(4096), b"d" * 10]):
        log.add(7, records.encode(7, i, data))
    log.drain()  # the writes happen in the entry log's thread
    end = log.sizes()[log.current]
    assert files.writebacks[0][0] == start
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(files.writebacks))
    assert files.writebacks[-1][0] + files.writebacks[-1][1] == end
    assert sum(n for _, n in files.writebacks) == end - start
    assert len(files.writebacks) >= 3  # a flush before the large record, the record, the tail
    log.close()
