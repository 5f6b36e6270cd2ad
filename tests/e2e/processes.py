"""A server process a cluster test starts, kills with SIGKILL or stops with SIGTERM."""

from __future__ import annotations

import subprocess

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
