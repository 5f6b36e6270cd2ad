"""The attacks of issue 11 on the state store, each now refused with StateAuthError: a client
on a memory server's port sending the controller's block commands or a peer's imports and
chain writes, and a client registering a fake memory server with the controller. Memory
servers that hold the internal secret still join over TCP and move data between each other."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from taureau.common import errors
from taureau.state import codec
from taureau.state.codec import Op
from taureau.state.conn import Conn
from taureau.state.internal_auth import create_secret, proof
from taureau.state.limits import CONTROL_MAX
from taureau.state.memory_server import MemoryServer
from tests.state.helpers import prove

REFUSED = "refused: this connection has not proved the internal secret"


@pytest.fixture
def victim(cluster):
    """Another client's table and its first block, where the attacker can reach it."""
    ht = cluster.client().open_or_create_hash_table("/victim/accounts")
    ht.put(b"password", b"hunter2")
    part = ht._parts[0]
    return ht, part.alloc, Conn(part.addr, 5)


def _register_args(address: str = "127.0.0.1:1") -> list[bytes]:
    return codec.pack_json({"address": address, "block_size": 65536, "num_blocks": 64})


def test_export_of_another_clients_table_is_refused(cluster, victim):
    ht, alloc, conn = victim
    with pytest.raises(errors.StateAuthError, match="EXPORT is taken from the controller only"):
        conn.call(Op.EXPORT, [alloc])
    assert ht.get(b"password") == b"hunter2"


def test_import_into_another_clients_block_is_refused(cluster, victim):
    ht, alloc, conn = victim
    with pytest.raises(errors.StateAuthError, match=f"IMPORT {REFUSED}"):
        conn.call(Op.IMPORT, [alloc, b"password", b"pwned"])
    assert ht.get(b"password") == b"hunter2"


def test_free_block_of_another_client_is_refused(cluster, victim):
    ht, alloc, conn = victim
    with pytest.raises(errors.StateAuthError, match="FREE_BLOCK is taken from the controller only"):
        conn.call(Op.FREE_BLOCK, codec.pack_json({"alloc": codec.unpack_u64(alloc)}))
    assert ht.get(b"password") == b"hunter2"
    assert cluster.client().status("/victim/accounts")["blocks"] == 1


def test_new_block_behind_the_controllers_back_is_refused(cluster, victim):
    _, _, conn = victim
    before = cluster.call(lambda: len(cluster.memory_servers[0].blocks))
    args = {"alloc": 999_999, "struct": 999_999, "kind": "hash_table", "lo": 0, "hi": 1}
    for _ in range(3):
        with pytest.raises(errors.StateAuthError, match="NEW_BLOCK is taken from the controller only"):
            conn.call(Op.NEW_BLOCK, codec.pack_json(args))
    assert cluster.call(lambda: len(cluster.memory_servers[0].blocks)) == before


def test_a_fake_memory_server_cannot_register(cluster):
    c = cluster.client()
    servers = c.stats()["servers"]
    attacker = Conn(cluster.address, 5, CONTROL_MAX)
    with pytest.raises(errors.StateAuthError, match=f"REGISTER {REFUSED}"):
        attacker.call(Op.REGISTER, _register_args())
    # A guessed proof does no better, and the challenge it answered is spent.
    issued = codec.unpack_json(attacker.call(Op.CHALLENGE, codec.pack_json({})))["challenge"]
    with pytest.raises(errors.StateAuthError, match="wrong internal secret"):
        attacker.call(Op.PROVE, codec.pack_json({"proof": proof(create_secret(), bytes.fromhex(issued)).hex()}))
    with pytest.raises(errors.StateAuthError, match="PROVE without a CHALLENGE first"):
        attacker.call(Op.PROVE, codec.pack_json({"proof": "00" * 32}))
    for bad in ({}, {"proof": "not hex"}, {"proof": 7}):
        attacker.call(Op.CHALLENGE, codec.pack_json({}))
        with pytest.raises(errors.StateAuthError, match="wrong internal secret"):
            attacker.call(Op.PROVE, codec.pack_json(bad))
    with pytest.raises(errors.StateAuthError, match=f"REGISTER {REFUSED}"):
        attacker.call(Op.REGISTER, _register_args())
    assert c.stats()["servers"] == servers
    # The victim's new structure lands on the real memory server, and reads back its own value.
    ht = c.create_hash_table("/victim/bank")
    ht.put(b"alice", b"balance=10")
    assert ht._parts[0].addr == cluster.memory_servers[0].address
    assert ht.get(b"alice") == b"balance=10"


def test_a_memory_server_with_the_wrong_secret_cannot_join(cluster):
    ms = MemoryServer(controller=cluster.address, block_size=64 << 10, num_blocks=4,
                      exit_on_controller_loss=False, internal_secret=create_secret())
    with pytest.raises(errors.StateAuthError, match="wrong internal secret"):
        cluster.run(ms.start())
    cluster.run(ms.close())
    without = MemoryServer(controller=cluster.address, block_size=64 << 10, num_blocks=4,
                           exit_on_controller_loss=False)
    with pytest.raises(errors.StateAuthError, match="needs the internal secret"):
        cluster.run(without.start())
    cluster.run(without.close())
    assert cluster.client().stats()["servers"] == 1


def test_chain_writes_and_installs_from_a_client_are_refused(cluster):
    cluster.add_memory_server()  # joins over TCP with the secret
    ht = cluster.client().open_or_create_hash_table("/victim/replicated", replicas=2)
    ht.put(b"k", b"v")  # forwarded head -> tail: the peers proved themselves to each other
    p = ht._parts[0]
    tail = Conn(p.raddr, 5)
    with pytest.raises(errors.StateAuthError, match=f"CHAIN_WRITE {REFUSED}"):
        tail.call(Op.CHAIN_WRITE, [p.ralloc, bytes([Op.PUT]), b"k", b"forged"])
    with pytest.raises(errors.StateAuthError, match=f"INSTALL {REFUSED}"):
        tail.call(Op.INSTALL, [p.ralloc, b"{}"])
    assert ht.get(b"k") == b"v"


def test_a_proven_connection_still_gets_the_checks_behind_the_gate(cluster, victim):
    """The secret opens the gate, not the block: a live block still takes no IMPORT."""
    ht, alloc, conn = victim
    prove(conn, cluster.controller.internal_secret)
    with pytest.raises(errors.StateProtocolError, match="not expecting an import"):
        conn.call(Op.IMPORT, [alloc, b"password", b"pwned"])
    assert ht.get(b"password") == b"hunter2"


def test_the_secret_file_is_owner_only_and_the_cli_checks_it(cluster, tmp_path):
    path = tmp_path / "state" / "internal.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    cmd = [sys.executable, "-m", "taureau.cli.state_cmd", "memory-server", "--controller", cluster.address,
           "--block-size", "64KiB", "--blocks", "4"]
    bad = tmp_path / "bad.key"
    bad.write_text("zz")
    refused = subprocess.run([*cmd, "--internal-secret-file", str(bad)], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"error: --internal-secret-file: {bad} is not an internal secret (hex)"
    missing = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1
    assert "needs the internal secret (--internal-secret-file)" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert cluster.client().stats()["servers"] == 1
