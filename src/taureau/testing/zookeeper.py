"""A private ZooKeeper server for tests: Debian's `zookeeper` package, run straight from its jars.

Each server gets its own data directory and a free loopback port, so tests never touch (or
depend on) a ZooKeeper the machine may run. The tick is short (100 ms) so a session of 1 s
can be tested; nothing else differs from a production standalone server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence

from taureau.testing.ports import free_port

ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"  # its manifest names the jars it needs
LOGGER_JARS = ("/usr/share/java/slf4j-simple.jar", "/usr/share/java/slf4j-nop.jar")
MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"


def missing_reason() -> str | None:
    """Why no server can start here, or None if one can."""
    if shutil.which("java") is None:
        return "no java on PATH (apt-get install zookeeper brings one)"
    if not os.path.exists(ZOOKEEPER_JAR):
        return f"no ZooKeeper install ({ZOOKEEPER_JAR} missing; apt-get install zookeeper)"
    return None


def four_letter(port: int, word: bytes, timeout: float = 2.0, host: str = "127.0.0.1") -> bytes:
    """Send a ZooKeeper four-letter command ("srvr", "ruok") and return the whole answer."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word)
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


class ZooKeeperServer:
    """One standalone ZooKeeper process on `host` (127.0.0.1 unless told), started behind
    `command_prefix` if given (e.g. `ip netns exec NS`, for a network namespace's address).

    >>> server = ZooKeeperServer("/tmp/zk1"); server.start(); server.url
    'zk://127.0.0.1:40213'
    """

    def __init__(
        self,
        data_dir: str,
        port: int | None = None,
        tick_ms: int = 100,
        *,
        host: str = "127.0.0.1",
        command_prefix: Sequence[str] = (),
    ) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.host = host
        self.command_prefix = list(command_prefix)
        self.port = port or free_port()
        self.tick_ms = tick_ms
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"zk://{self.host}:{self.port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.data_dir, "server.log")

    def start(self, timeout: float = 60.0) -> None:
        reason = missing_reason()
        if reason is not None:
            raise RuntimeError(reason)
        os.makedirs(os.path.join(self.data_dir, "data"), exist_ok=True)
        config = os.path.join(self.data_dir, "zoo.cfg")
        with open(config, "w") as f:
            f.write(
                f"tickTime={self.tick_ms}\n"
                f"dataDir={self.data_dir}/data\n"
                f"clientPort={self.port}\n"
                f"clientPortAddress={self.host}\n"
                "admin.enableServer=false\n"
                f"minSessionTimeout={2 * self.tick_ms}\n"
                "maxSessionTimeout=60000\n"
                "4lw.commands.whitelist=srvr,ruok\n"
            )
        logger = next((jar for jar in LOGGER_JARS if os.path.exists(jar)), None)
        classpath = ZOOKEEPER_JAR + (f":{logger}" if logger else "")
        command = [
            *self.command_prefix,
            "java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.jmx.log4j.disable=true", "-cp", classpath, MAIN, config,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited with {self.process.returncode}; see {self.log_path}")
            try:
                if b"Mode: standalone" in self.probe():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"ZooKeeper did not start within {timeout:g}s; see {self.log_path}")

    def probe(self) -> bytes:
        """The server's answer to "srvr" (OSError while it does not answer); a server in
        another network namespace is probed from there."""
        return four_letter(self.port, b"srvr", timeout=1.0, host=self.host)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
