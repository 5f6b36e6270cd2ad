"""`taureau cluster up`: a private ZooKeeper, bookies and brokers as child processes; the
URLs it prints serve the official client; Ctrl-C stops everything and exits 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pulsar

from taureau.testing.ports import free_port_run
from tests.e2e.harness import spawn_until_ready


def _free_run(count: int) -> int:
    """A base port with `count` free consecutive ports after it."""
    return free_port_run(count)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_cluster_up_serves_the_printed_url_and_ctrl_c_stops_every_node(tmp_path):
    broker, web, bookie = _free_run(2), _free_run(2), _free_run(1)
    output: list[str] = []
    args = [sys.executable, "-m", "taureau.cli.main", "cluster", "up", "--brokers", "2", "--bookies", "1",
            "--data-dir", str(tmp_path), "--broker-port", str(broker), "--web-port", str(web),
            "--bookie-port", str(bookie)]
    proc = spawn_until_ready(args, "metadata store zk://", output, 120, "cluster up")
    try:
        service_url = next(line.split()[-1] for line in output if "service URL" in line)
        assert service_url == f"pulsar://127.0.0.1:{broker},127.0.0.1:{broker + 1}"
        client = pulsar.Client(service_url, operation_timeout_seconds=30,
                               logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        try:
            for i in range(4):  # topics over the bundles, so over both brokers
                consumer = client.subscribe(f"up-{i}", "s")
                client.create_producer(f"up-{i}").send(f"m{i}".encode())
                assert consumer.receive(10_000).data() == f"m{i}".encode()
        finally:
            client.close()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends (the children are in their own sessions)
        assert proc.wait(60) == 0, "".join(output[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Taureau cluster shutting down" in "".join(output)
    for port in (broker, broker + 1, web, web + 1, bookie):
        assert not _listening(port), f"port {port} still served after the cluster stopped"


def test_broker_refuses_bad_arguments_before_connecting():
    for args, message in (
        (["--metadata-store", "/tmp/not-zk"], "is not a zk://host:port"),
        (["--metadata-store", "zk://127.0.0.1:1", "--ensemble-size", "1", "--write-quorum", "2"],
         "need 1 <= ack quorum (2) <= write quorum (2) <= ensemble size (1)"),
    ):
        done = subprocess.run([sys.executable, "-m", "taureau.cli.main", "broker", *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stderr
