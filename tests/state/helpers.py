"""Helpers for state tests that speak the wire by hand or measure a server process."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


class ServerProcess:
    """Controller + memory server in a child process (tests/state/server_proc.py), so that
    /proc/<pid>/status is the servers' memory alone."""

    def __init__(self, data_dir, *, block_size: int = 64 << 10, num_blocks: int = 16, lease_ms: int = 60000,
                 memory_budget: int = 0):  # fmt: skip
        script = Path(__file__).with_name("server_proc.py")
        args = [sys.executable, str(script), str(data_dir), str(block_size), str(num_blocks), str(lease_ms)]
        args.append(str(memory_budget))  # 0: the default (every block full)
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            self.proc.kill()
            raise RuntimeError(f"state server process did not start (exit code {self.proc.poll()})")
        self.address, self.ms_address = line

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS line")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def raw_socket(address: str, timeout: float = 5) -> socket.socket:
    """A plain TCP connection, for speaking the wire protocol by hand."""
    host, _, port = address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def prove(conn, secret: bytes) -> None:
    """Prove the internal secret on a blocking state connection, as a memory server does."""
    from taureau.state import codec
    from taureau.state.codec import Op
    from taureau.state.internal_auth import proof

    issued = bytes.fromhex(codec.unpack_json(conn.call(Op.CHALLENGE, codec.pack_json({})))["challenge"])
    conn.call(Op.PROVE, codec.pack_json({"proof": proof(secret, issued).hex()}))
