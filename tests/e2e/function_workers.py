"""Start and kill real `taureau functions-worker` processes of one cluster (a ZooKeeper store)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.e2e.harness import free_port
from tests.e2e.processes import ServerProcess

READY = "Taureau functions worker ready"


class FunctionsWorkerProcess(ServerProcess):
    def __init__(self, data_dir: Path, metadata_url: str, service_url: str, admin_url: str,
                 session_timeout_s: float = 2.0) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.web_port = free_port()
        self.args = [
            sys.executable, "-m", "taureau.cli.main", "functions-worker", "--metadata-store", metadata_url,
            "--broker-service-url", service_url, "--broker-admin-url", admin_url, "--data-dir", str(data_dir),
            "--web-port", str(self.web_port), "--bind-address", "127.0.0.1", "--advertised-address", "127.0.0.1",
            "--metadata-session-timeout", str(session_timeout_s), "--functions-warm-pool", "0",
        ]

    @property
    def admin_url(self) -> str:  # the name the functions test helpers expect
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def worker_id(self) -> str:
        return f"127.0.0.1:{self.web_port}"

    def start(self, timeout: float = 60.0) -> FunctionsWorkerProcess:
        self.spawn(self.args, READY, timeout, "functions worker")
        return self
