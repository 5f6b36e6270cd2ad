"""The data directory is owner-only: 0700 directories, 0600 files, whatever the umask."""

from __future__ import annotations

import os
import stat

import pulsar
import pytest

from tests.e2e.harness import Standalone


@pytest.fixture
def loose_umask():
    """The usual 022 umask, which alone would leave files world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root) -> dict[str, int]:
    modes = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            modes[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return modes


def test_every_file_and_directory_of_the_data_dir_is_owner_only(tmp_path, loose_umask):
    data = tmp_path / "data"
    server = Standalone(data).start()
    try:
        client = pulsar.Client(server.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        consumer = client.subscribe("persistent://public/default/private", "s")
        client.create_producer("persistent://public/default/private").send(b"secret")
        assert consumer.receive(5000).data() == b"secret"
        client.close()
    finally:
        assert server.stop() == 0
    modes = _modes(data)
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    # The lock, the metadata log, the bookie's journal, entry log and index are all there.
    assert "LOCK" in modes and "bookie-0/index.sqlite" in modes
    for part in ("metadata/", "bookie-0/journal/", "bookie-0/ledgers/"):
        assert any(p.startswith(part) for p in modes), (part, sorted(modes))
    loose = {p: oct(m) for p, m in modes.items() if m != (0o700 if os.path.isdir(data / p) else 0o600)}
    assert loose == {}


def test_an_existing_world_readable_data_dir_is_made_owner_only(tmp_path, loose_umask):
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    server = Standalone(data).start()
    try:
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    finally:
        assert server.stop() == 0
    assert "making it owner-only (700)" in "".join(server.output)
