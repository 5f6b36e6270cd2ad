"""Retired journal files and entry logs are cut down a few MiB at a time before the unlink, so
the journal's fsyncs on the same disk pass between small filesystem transactions."""

from __future__ import annotations

import os

from taureau.storage.bookie import files as files_module
from taureau.storage.bookie.files import SHRINK_STEP, OSFiles, remove_files


class RecordingFiles(OSFiles):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def truncate(self, handle, size: int) -> None:
        self.sizes.append(size)
        super().truncate(handle, size)


def test_a_large_file_is_cut_down_step_by_step_then_unlinked(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(files_module, "SHRINK_PAUSE_S", 0)
    big = tmp_path / "journal-1.txn"
    big.write_bytes(b"x" * (2 * SHRINK_STEP + 123))
    small = tmp_path / "journal-2.txn"
    small.write_bytes(b"y" * 100)
    fs = RecordingFiles()
    remove_files(fs, [str(big), str(small), str(tmp_path / "gone-already.txn")])
    assert fs.sizes == [SHRINK_STEP + 123, 123]  # one cut per step; the small file has none
    assert os.listdir(tmp_path) == []  # and nothing was created for the missing one
