"""A server process a cluster test starts, kills with SIGKILL or stops with SIGTERM."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.e2e.harness import spawn_until_ready


class ServerProcess:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def spawn(self, args: list[str], ready_line: str, timeout: float, what: str) -> None:
        self.proc = spawn_until_ready(args, ready_line, self.output, timeout, what)

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
        except subprocess.TimeoutExpired:
            self.proc.kill()  # never leave a process behind a test
            self.proc.wait()
            raise
        finally:
            self.proc = None


class ClusterNodeProcess(ServerProcess):
    """A `taureau <verb>` node of a cluster: its metadata store, data directory, address (a
    network namespace's, behind `wrap`) and session timeout, common to bookies and brokers."""

    def __init__(self, data_dir: Path, metadata_url: str, extra: Sequence[str], session_timeout_s: float,
                 host: str, wrap: Sequence[str]) -> None:
        super().__init__()
        self.host = host
        self.wrap = list(wrap)
        self.data_dir = data_dir
        self.metadata_url = metadata_url
        self.extra = [*extra, "--metadata-session-timeout", str(session_timeout_s)]

    def command(self, verb: str, *flags: str) -> list[str]:
        """The command line of `taureau <verb>` with `flags`, this node's common ones and extras."""
        return [
            *self.wrap, sys.executable, "-m", "taureau.cli.main", verb, "--metadata-store", self.metadata_url,
            "--data-dir", str(self.data_dir), *flags, "--bind-address", self.host,
            "--advertised-address", self.host, *self.extra,
        ]
