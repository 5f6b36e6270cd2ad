"""Start and kill real `taureau bookie` processes for cluster tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.harness import Standalone, free_port
from tests.e2e.processes import ClusterNodeProcess

READY = "Taureau bookie ready"


class BookieProcess(ClusterNodeProcess):
    def __init__(self, data_dir: Path, metadata_url: str, *extra: str, session_timeout_s: float = 2.0,
                 host: str = "127.0.0.1", wrap: Sequence[str] = ()) -> None:
        super().__init__(data_dir, metadata_url, extra, session_timeout_s, host, wrap)
        self.port = free_port()

    @property
    def bookie_id(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> BookieProcess:
        self.spawn(self.command("bookie", "--port", str(self.port)), READY, timeout, "bookie")
        return self


def broker_on_bookies(root: Path, metadata_url: str, count: int) -> tuple[Standalone, list[BookieProcess]]:
    """`count` bookies started under root/bookie-N, and a standalone (not started yet) on
    them (`--remote-bookies`, no functions, a 2 s metadata session)."""
    bookies = [BookieProcess(root / f"bookie-{i}", metadata_url).start() for i in range(count)]
    server = Standalone(root / "broker", "--metadata-store", metadata_url, "--remote-bookies", "--no-functions",
                        "--metadata-session-timeout", "2")
    return server, bookies


@contextmanager
def running_bookies(tmp_path_factory, metadata_url: str, count: int, prefix: str = "bookie") -> Iterator[list[BookieProcess]]:
    """`count` bookies on `metadata_url` for a module's tests, killed at the end."""
    started = [BookieProcess(tmp_path_factory.mktemp(f"{prefix}{i}"), metadata_url).start() for i in range(count)]
    try:
        yield started
    finally:
        for bookie in started:
            bookie.kill()
