"""Apache Pulsar standalone on free loopback ports: the reference broker Taureau is compared with.

Its jars come from Maven Central through pulsar_standalone/pom.xml (built once into the
toolchain cache). It runs PulsarStandaloneStarter, Pulsar's own standalone entry point, with
RocksDB metadata, one bookie, no functions worker and no stream storage, in its own process
group with every file under `workdir`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from . import pulsar_toolchain
from .base import free_port, spawn

PROJECT = Path(__file__).with_name("pulsar_standalone")
VERSION = re.search(r"<pulsar.version>(.+?)</pulsar.version>", (PROJECT / "pom.xml").read_text()).group(1)
MAIN = "org.apache.pulsar.PulsarStandaloneStarter"
JVM = [
    # A small heap and direct-memory budget for a shared 2-core machine.
    "-Xms256m",
    "-Xmx1g",
    "-XX:MaxDirectMemorySize=1g",
    # What Pulsar's own launch script opens up for Netty and its metrics on Java 17.
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-opens=java.management/sun.management=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.platform=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
]
START_TIMEOUT = 120.0  # seconds; a cold JVM on a busy 2-core machine


def missing() -> str | None:
    """None when Java and Maven are there to build and run it, else why not."""
    absent = pulsar_toolchain.missing_tools("java", "mvn")
    return f"Apache Pulsar standalone needs Java 17+ and Maven: {absent}" if absent else None


def build() -> Path:
    """The directory whose lib/ holds pulsar-broker and its dependencies."""
    return pulsar_toolchain.maven_package(PROJECT, f"pulsar-standalone-{VERSION}")


@dataclass
class PulsarStandalone:
    proc: subprocess.Popen
    service_url: str  # pulsar://127.0.0.1:<broker port>
    admin_url: str  # http://127.0.0.1:<web port>
    log: Path

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (its shutdown hook closes broker and bookie), then SIGKILL after `timeout`."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(workdir: Path, transactions: bool = False) -> PulsarStandalone:
    """Build if needed, start, and wait until the default namespace exists (the starter
    creates it last). transactions: with transactionCoordinatorEnabled=true (compat runs)."""
    lib = build() / "lib"
    broker_port, web_port, bookie_port = free_port(), free_port(), free_port()
    conf = workdir / "standalone.conf"
    conf.write_text(
        (PROJECT / "standalone.conf").read_text()
        + "bindAddress=127.0.0.1\nadvertisedAddress=127.0.0.1\n"
        + f"brokerServicePort={broker_port}\nwebServicePort={web_port}\n"
        + ("transactionCoordinatorEnabled=true\n" if transactions else "")
    )
    cmd = [shutil.which("java") or "java", *JVM, "-cp", f"{lib}/*", MAIN, "--config", str(conf)]
    cmd += ["--no-functions-worker", "--no-stream-storage", "--bookkeeper-port", str(bookie_port)]
    cmd += ["--metadata-dir", str(workdir / "metadata"), "--bookkeeper-dir", str(workdir / "bookkeeper")]
    log = workdir / "pulsar.log"
    proc = spawn(cmd, log, cwd=workdir)
    server = PulsarStandalone(proc, f"pulsar://127.0.0.1:{broker_port}", f"http://127.0.0.1:{web_port}", log)
    deadline = time.monotonic() + START_TIMEOUT
    while not _ready(server.admin_url):
        if server.proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"Apache Pulsar standalone did not start:\n{tail}")
        time.sleep(0.5)
    return server


def _ready(admin_url: str) -> bool:
    try:
        reply = httpx.get(f"{admin_url}/admin/v2/namespaces/public", timeout=2.0)
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and "public/default" in reply.json()
