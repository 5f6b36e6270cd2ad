"""A real Bookie served over loopback TCP (BookieServer) and reached with RemoteBookie."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from taureau.common.errors import LedgerFencedError, NoSuchEntryError, NoSuchLedgerError
from taureau.metadata import EmbeddedMetadataStore
from taureau.net.server import start_tcp_server
from taureau.storage.bookie import Bookie, wire
from taureau.storage.bookie.service import BookieServer
from taureau.storage.bookie.wire import BookieUnavailableError
from taureau.storage.ledger import BookKeeperClient
from taureau.storage.ledger.remote import RemoteBookie

pytestmark = pytest.mark.anyio


class Served:
    def __init__(self, path) -> None:
        self.bookie = Bookie(path, checkpoint_interval_s=None, journal_fsync=False)

    async def start(self) -> Served:
        await self.bookie.start()
        self.service = BookieServer(self.bookie)
        self.server, port = await start_tcp_server(self.service.protocol, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self.server.close()
        self.service.close_connections()
        await self.bookie.close()


@pytest.fixture
async def served(tmp_path):
    s = await Served(tmp_path / "b").start()
    yield s
    await s.stop()


async def test_batched_adds_ranged_reads_lac_fence_delete(served):
    remote = RemoteBookie(served.address)
    await remote.add_entries(7, 0, [b"e%d" % i for i in range(100)])
    await asyncio.gather(*(remote.add_entry(8, i, b"x" * i) for i in range(20)))
    assert await remote.read_entries(7, 0, 99) == [b"e%d" % i for i in range(100)]
    assert await remote.read_entries(7, 95, 200) == [b"e%d" % i for i in range(95, 100)]  # stops at the end
    assert await remote.read_entry(8, 19) == b"x" * 19
    assert await remote.read_last_entry_id(7) == 99
    assert await remote.read_last_entry_id(12345) == -1
    with pytest.raises(NoSuchEntryError):
        await remote.read_entry(7, 100)
    assert await remote.fence(7) == 99
    with pytest.raises(LedgerFencedError):
        await remote.add_entry(7, 100, b"late")
    await remote.add_entry(7, 100, b"recovered", recovery_add=True)  # recovery passes the fence
    assert await remote.read_entry(7, 100) == b"recovered"
    await remote.delete_ledger(8)
    with pytest.raises(NoSuchLedgerError):
        await remote.read_entry(8, 0)
    await remote.close()


async def test_big_batches_and_reads_are_cut_to_the_frame_limits(served):
    remote = RemoteBookie(served.address)
    big = [bytes([i]) * (3 * 1024 * 1024) for i in range(6)]  # 18 MiB: three ADD requests at least
    await remote.add_entries(1, 0, big)
    assert await remote.read_entries(1, 0, 5) == big  # 18 MiB back in several READ answers
    await remote.close()


async def test_a_ledger_client_writes_through_remote_bookies_at_quorum(tmp_path):
    servers = [await Served(tmp_path / f"b{i}").start() for i in range(3)]
    try:
        remotes = {s.address: RemoteBookie(s.address) for s in servers}
        client = BookKeeperClient(EmbeddedMetadataStore(), remotes)
        ledger = await client.create_ledger(3, 2, 2)  # striped: each entry on 2 of the 3
        for i in range(30):
            assert await ledger.add_entry(b"m%d" % i) == i
        assert await ledger.add_entries([b"n%d" % i for i in range(30)]) == 30
        await ledger.close()
        for s in servers:  # each bookie holds exactly its write sets' entries
            held = await s.bookie.read_last_entry_id(ledger.ledger_id)
            assert held >= 57
        reader = await client.open_ledger(ledger.ledger_id)
        assert await reader.read_entries(0, 59) == [b"m%d" % i for i in range(30)] + [b"n%d" % i for i in range(30)]
        await client.close()
        for r in remotes.values():
            await r.close()
    finally:
        for s in servers:
            await s.stop()


async def test_a_stopped_bookie_is_unavailable_not_a_hang(tmp_path):
    s = await Served(tmp_path / "b").start()
    remote = RemoteBookie(s.address, connect_timeout_s=2)
    await remote.add_entry(1, 0, b"a")
    await s.stop()
    with pytest.raises(BookieUnavailableError):
        await remote.add_entry(1, 1, b"b")
    with pytest.raises(BookieUnavailableError, match="not reachable"):
        await remote.read_entry(1, 0)
    await remote.close()


def _raw(address: str) -> socket.socket:
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def _answer(sock: socket.socket) -> wire.Response:
    splitter = wire.FrameSplitter()
    while True:
        frames = splitter.feed(sock.recv(65536))
        if frames:
            return wire.decode_response(frames[0])


async def test_bad_input_gets_a_clear_answer_stores_nothing_and_the_bookie_keeps_serving(served):
    def exchange() -> list[wire.Response]:
        sock = _raw(served.address)
        answers = []
        for frame in (
            struct.pack(">BQ", 99, 5) + b"junk",  # unknown op
            struct.pack(">BQQQBI", wire.ADD, 6, 9, 0, 0, 2) + struct.pack(">I", 1) + b"a",  # truncated add
            struct.pack(">BQQQQ", wire.READ, 7, 9, 5, 1),  # reversed range
            struct.pack(">BQQQBI", wire.ADD, 8, 2**64 - 1, 0, 0, 1) + struct.pack(">I", 1) + b"a",  # bad id
        ):
            sock.sendall(struct.pack(">I", len(frame)) + frame)
            answers.append(_answer(sock))
        sock.close()
        return answers

    answers = await asyncio.to_thread(exchange)
    assert [a.request_id for a in answers] == [5, 6, 7, 8]
    assert all(a.status == wire.BAD_REQUEST for a in answers)
    assert "unknown request op" in answers[0].reason and "truncated" in answers[1].reason

    def oversized() -> bytes:
        sock = _raw(served.address)
        sock.sendall(struct.pack(">I", wire.MAX_FRAME + 1) + b"x" * 100)
        data = sock.recv(100)  # the bookie closes a stream it cannot trust
        sock.close()
        return data

    assert await asyncio.to_thread(oversized) == b""
    assert await served.bookie.read_last_entry_id(9) == -1  # nothing stored
    remote = RemoteBookie(served.address)
    await remote.add_entry(9, 0, b"fine")  # and the bookie still serves
    assert await remote.read_entry(9, 0) == b"fine"
    await remote.close()


async def test_connections_over_the_limit_are_refused_and_the_others_go_on(tmp_path):
    s = await Served(tmp_path / "b").start()
    s.service.max_connections = 2
    try:
        first, second = RemoteBookie(s.address), RemoteBookie(s.address)
        await first.add_entry(1, 0, b"a")
        await second.add_entry(1, 1, b"b")
        third = RemoteBookie(s.address)
        with pytest.raises(BookieUnavailableError):
            await third.read_entry(1, 0)
        assert await first.read_entries(1, 0, 1) == [b"a", b"b"]
        for r in (first, second, third):
            await r.close()
    finally:
        await s.stop()
