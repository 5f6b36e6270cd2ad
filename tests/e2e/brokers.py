"""Start and kill real `taureau broker` processes for cluster tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.e2e.harness import free_port
from tests.e2e.processes import ClusterNodeProcess

READY = "Taureau broker ready"


class BrokerProcess(ClusterNodeProcess):
    def __init__(self, data_dir: Path, metadata_url: str, *extra: str, session_timeout_s: float = 2.0,
                 host: str = "127.0.0.1", wrap: Sequence[str] = ()) -> None:
        super().__init__(data_dir, metadata_url, extra, session_timeout_s, host, wrap)
        self.broker_port = free_port()
        self.web_port = free_port()

    @property
    def service_url(self) -> str:
        return f"pulsar://{self.host}:{self.broker_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    @property
    def broker_id(self) -> str:
        return f"{self.host}:{self.web_port}"

    def start(self, timeout: float = 60.0) -> BrokerProcess:
        args = self.command("broker", "--broker-port", str(self.broker_port), "--web-port", str(self.web_port))
        self.spawn(args, READY, timeout, "broker")
        return self


class Brokers:
    """The brokers one test starts, all with the same extra flags; `stop_all` stops them
    gracefully, so their sessions close and the next test finds every bundle free (a killed
    broker would keep its bundles for a session timeout)."""

    def __init__(self, root: Path, metadata_url: str, *extra: str) -> None:
        self.root = root
        self.metadata_url = metadata_url
        self.extra = extra
        self.started: list[BrokerProcess] = []

    def start(self, n: int) -> list[BrokerProcess]:
        """n more brokers; every broker started so far."""
        for _ in range(n):
            broker = BrokerProcess(self.root / f"broker{len(self.started)}", self.metadata_url, *self.extra)
            self.started.append(broker.start())
        return self.started

    def stop_all(self) -> None:
        for broker in self.started:
            broker.stop()
