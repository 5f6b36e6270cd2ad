"""Start and kill real `taureau bookie` processes for cluster tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import Standalone, free_port, spawn_until_ready

READY = "Taureau bookie ready"


class BookieProcess:
    def __init__(self, data_dir: Path, metadata_url: str, *extra: str, session_timeout_s: float = 2.0) -> None:
        self.data_dir = data_dir
        self.metadata_url = metadata_url
        self.port = free_port()
        self.extra = [*extra, "--metadata-session-timeout", str(session_timeout_s)]
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def bookie_id(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> BookieProcess:
        args = [
            sys.executable, "-m", "taureau.cli.main", "bookie", "--metadata-store", self.metadata_url,
            "--data-dir", str(self.data_dir), "--port", str(self.port), "--bind-address", "127.0.0.1",
            "--advertised-address", "127.0.0.1", *self.extra,
        ]
        self.proc = spawn_until_ready(args, READY, self.output, timeout, "bookie")
        return self

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        finally:
            self.proc = None


def broker_on_bookies(root: Path, metadata_url: str, count: int) -> tuple[Standalone, list[BookieProcess]]:
    """`count` bookies started under root/bookie-N, and a standalone (not started yet) on
    them (`--remote-bookies`, no functions, a 2 s metadata session)."""
    bookies = [BookieProcess(root / f"bookie-{i}", metadata_url).start() for i in range(count)]
    server = Standalone(root / "broker", "--metadata-store", metadata_url, "--remote-bookies", "--no-functions",
                        "--metadata-session-timeout", "2")
    return server, bookies
