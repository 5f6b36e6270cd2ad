"""`taureau functions-worker` on its own, beside a standalone that runs no worker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import httpx
import pulsar

from tests.e2e.functions_helpers import EXAMPLES, receive_all, taureau, wait_for
from tests.e2e.harness import Standalone, free_port


def test_a_separate_functions_worker_runs_functions_against_the_broker(tmp_path):
    broker = Standalone(tmp_path / "broker", "--no-functions").start()
    web_port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "taureau.cli.main", "functions-worker", "--broker-service-url", broker.service_url,
         "--broker-admin-url", broker.admin_url, "--data-dir", str(tmp_path / "worker"), "--web-port", str(web_port),
         "--bind-address", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(worker.stdout), daemon=True).start()
    try:
        wait_for(lambda: any("Taureau functions worker ready" in line for line in lines), what="the worker")

        class Worker:
            admin_url = f"http://127.0.0.1:{web_port}"

        assert httpx.get(f"{broker.admin_url}/admin/v3/functions/public/default").status_code == 404  # not here
        code, _, err = taureau(Worker(), "create", "--name", "remote", "--py", str(EXAMPLES / "exclamation.py"),
                               "--classname", "exclamation.Exclamation", "--inputs", "rw-in", "--output", "rw-out")
        assert code == 0, err
        client = pulsar.Client(broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        out = client.subscribe("rw-out", "check", initial_position=pulsar.InitialPosition.Earliest)
        wait_for(lambda: httpx.get(f"{Worker.admin_url}/admin/v3/functions/public/default/remote/status")
                 .json()["numRunning"] == 1, what="the instance")
        client.create_producer("rw-in").send(b"far")
        assert receive_all(out, 1)[0].data() == b"far!"
        metrics = httpx.get(f"{Worker.admin_url}/metrics").text
        assert 'pulsar_function_received_total{cluster="standalone",tenant="public"' in metrics
        client.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(20)
        broker.stop()
    assert code == 0
    assert any("Taureau functions worker shutting down" in line for line in lines)
